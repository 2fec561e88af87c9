//! `billing check-deploy`: the build's workflows against the live ones in a
//! database, before the build is deployed.

use std::process::Command;
use std::time::Duration;

use billing::{MeterInput, ReadMeter, Trial, Usage, HOUR};
use octane::prelude::*;
use octane::{Engine, WorkflowState};

/// The meter as an older build ran it: reading before sleeping, where the
/// current one sleeps first.
struct OldMeter;
impl Workflow for OldMeter {
    const NAME: &'static str = "meter";
    type Input = MeterInput;
    type Output = Usage;
    async fn run(ctx: &mut WorkflowCtx, input: &MeterInput) -> Result<Usage> {
        let customer = input.customer.clone();
        ctx.repeat(Usage::default())
            .run(move |ctx, usage| {
                let customer = customer.clone();
                async move {
                    usage.units += ctx
                        .activity(ReadMeter {
                            customer,
                            hour: usage.hours,
                        })
                        .await?;
                    ctx.sleep(HOUR).await?;
                    usage.hours += 1;
                    Ok(Loop::Continue)
                }
                .boxed()
            })
            .await
    }
}

fn check_deploy(url: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_billing"))
        .args(["check-deploy", "--db", url])
        .output()
        .expect("run billing");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn until_sleeping(engine: &Engine, id: WorkflowId) {
    for _ in 0..3000 {
        if engine.get(id).await.unwrap().state == WorkflowState::Sleeping {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("workflow {id} never went to sleep");
}

#[tokio::test]
async fn check_deploy_fails_on_a_live_workflow_the_build_would_diverge_from() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("billing.db").display());
    let live = billing::register(Engine::open(&url).await.unwrap());
    let worker = live.worker().spawn();
    let trial = live.dispatch::<Trial>("ada".into()).await.unwrap();
    until_sleeping(&live, trial).await;
    worker.shutdown().await;

    let (code, out) = check_deploy(&url);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 workflow(s) checked: 1 compatible, 0 not"),
        "{out}"
    );

    let old = Engine::open(&url).await.unwrap().register::<OldMeter>();
    let worker = old.worker().spawn();
    let meter = old
        .dispatch::<OldMeter>(MeterInput {
            customer: "bob".into(),
            hours: 24,
        })
        .await
        .unwrap();
    until_sleeping(&old, meter).await;
    worker.shutdown().await;

    let (code, out) = check_deploy(&url);
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains(&meter.to_string()))
        .unwrap_or_else(|| panic!("the report names the meter: {out}"));
    assert!(line.contains("diverged"), "{line}");
    assert!(line.contains("read_meter"), "{line}");
    assert!(
        out.contains("2 workflow(s) checked: 1 compatible, 1 not"),
        "{out}"
    );

    let (code, _) = check_deploy("sqlite:///nonexistent-dir/x.db");
    assert_eq!(code, 2, "a check that cannot run says so");
}
