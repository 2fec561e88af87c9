//! The web dashboard over HTTP: every page from the database, the actions
//! with their refusals, and the token.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use octane::prelude::*;
use octane::{Error, WorkflowState};
use support::http::{get, request, Response};
use support::{eventually, fast_worker, wait_state, Sleeper, TestDb};

#[derive(Serialize, Deserialize, Signal)]
struct Add {
    n: u64,
}

#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
struct Total {
    total: u64,
    adds: u64,
}

/// A loop that waits for `add` signals for ever, checkpointing each.
struct Adder;
impl Workflow for Adder {
    const NAME: &'static str = "adder";
    type Input = ();
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<()> {
        ctx.repeat(Total::default())
            .commit_every(1)
            .run(|ctx, t| {
                async move {
                    let Add { n } = ctx.listen::<Add>().await?;
                    t.total += n;
                    t.adds += 1;
                    Ok(Loop::<()>::Continue)
                }
                .boxed()
            })
            .await
    }
}

/// Starts a [`Sleeper`] child and waits for it.
struct Parent;
impl Workflow for Parent {
    const NAME: &'static str = "parent";
    type Input = ();
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<()> {
        ctx.workflow::<Sleeper>(()).output().await?;
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct Note(u64);
impl Activity for Note {
    const NAME: &'static str = "note";
    type Output = u64;
    async fn run(&self, _: &ActivityCtx) -> Result<u64> {
        Ok(self.0)
    }
}

/// A step, then an hour's sleep.
struct Shaped;
impl Workflow for Shaped {
    const NAME: &'static str = "shaped";
    type Input = ();
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<()> {
        ctx.activity(Note(1)).await?;
        ctx.sleep(Duration::from_secs(3600)).await?;
        Ok(())
    }
}

/// A deploy of `shaped` that dropped the step: its history diverges.
struct Reshaped;
impl Workflow for Reshaped {
    const NAME: &'static str = "shaped";
    type Input = ();
    type Output = ();
    async fn run(ctx: &mut WorkflowCtx, _: &()) -> Result<()> {
        ctx.sleep(Duration::from_secs(3600)).await?;
        Ok(())
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn ok(r: &Response) -> &str {
    assert_eq!(r.status, 200, "{}", r.body);
    &r.body
}

/// The form token a workflow page carries.
fn form_token(page: &str) -> String {
    let at = page
        .find("name=\"form_token\" value=\"")
        .expect("a form on the page")
        + 25;
    page[at..at + page[at..].find('"').unwrap()].to_string()
}

/// The text inside the first element with this `data-testid`, unescaped.
fn testid(page: &str, id: &str) -> Option<String> {
    let at = page.find(&format!("data-testid=\"{id}\""))?;
    let start = at + page[at..].find('>')? + 1;
    let raw = &page[start..start + page[start..].find('<')?];
    Some(
        raw.replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

async fn every_page_renders_from_the_database(db: TestDb) {
    let engine = db
        .engine()
        .await
        .sleep_in_memory_below(Duration::ZERO)
        .register::<Adder>()
        .register::<Parent>()
        .register::<Sleeper>()
        .register::<Shaped>();
    let worker = fast_worker(&engine);
    let adder = engine.dispatch::<Adder>(()).tag("team", "a").await.unwrap();
    for n in [3, 4] {
        engine.signal(Add { n }).to(adder).await.unwrap();
    }
    let parent = engine.dispatch::<Parent>(()).await.unwrap();
    let shaped = engine.dispatch::<Shaped>(()).await.unwrap();
    let mut sleepers = Vec::new();
    for _ in 0..24 {
        sleepers.push(engine.dispatch::<Sleeper>(()).await.unwrap());
    }
    wait_state(&engine, shaped, WorkflowState::Sleeping).await;
    wait_state(&engine, parent, WorkflowState::Sleeping).await;
    eventually("two adds", Duration::from_secs(30), || async {
        let s: octane::LoopState<Total> = engine.loop_state(adder).await.ok()?;
        (s.state.adds == 2).then_some(())
    })
    .await;
    wait_state(&engine, adder, WorkflowState::Sleeping).await;
    let asleep = octane::ListFilter::default()
        .name("sleeper")
        .state(WorkflowState::Sleeping);
    eventually(
        "the sleepers and the child asleep",
        Duration::from_secs(30),
        || async { (engine.list(asleep.clone()).await.ok()?.len() == 25).then_some(()) },
    )
    .await;
    worker.shutdown().await;
    // A signal nobody has consumed yet, and a diverged history.
    engine.signal(Add { n: 5 }).to(adder).await.unwrap();
    let reshaped = db.engine().await.register::<Reshaped>();
    reshaped.wake(shaped).await.unwrap();
    let worker = fast_worker(&reshaped);
    wait_state(&reshaped, shaped, WorkflowState::Parked).await;
    worker.shutdown().await;

    let dash = engine.serve_dashboard(loopback()).await.unwrap();
    let addr = dash.addr();

    let overview = get(addr, "/", &[]).await;
    let page = ok(&overview);
    assert_eq!(
        testid(page, "store"),
        Some(octane::store::mask_password(&db.url)),
        "the store in use, without its password"
    );
    assert!(
        page.contains(r#"data-name="sleeper" data-state="sleeping"><a href="/workflows?name=sleeper&amp;state=sleeping">25</a>"#),
        "24 sleepers and the child: {page}"
    );
    assert!(page.contains(r#"data-name="shaped" data-state="parked"><a"#));
    assert!(
        page.contains(r#"data-name="adder" data-state="pending"><a"#),
        "woken by the signal, no worker to take it"
    );
    assert!(page.contains(&shaped.to_string()), "a recent failure");

    // The list, filtered and a page at a time.
    let listed = get(addr, "/workflows?name=adder&tag=team%3Da", &[]).await;
    assert!(ok(&listed).contains(&format!("/workflows/{adder}")));
    let mut seen = Vec::new();
    let mut path = "/workflows?name=sleeper&state=sleeping&limit=10".to_string();
    loop {
        let r = get(addr, &path, &[]).await;
        let page = ok(&r);
        let ids: Vec<String> = page
            .match_indices("data-workflow=\"")
            .map(|(at, m)| page[at + m.len()..at + m.len() + 36].to_string())
            .collect();
        assert!(ids.len() <= 10);
        seen.extend(ids);
        match testid(page, "next-page").and(page.find("href=\"/workflows?after=")) {
            Some(at) => {
                let start = at + 6;
                path = page[start..start + page[start..].find('"').unwrap()].replace("&amp;", "&");
            }
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 25, "each sleeper once, over three pages");

    // A loop: its iteration, checkpoint, state, and the pending signal.
    let r = get(addr, &format!("/workflows/{adder}"), &[]).await;
    let page = ok(&r);
    assert_eq!(testid(page, "loop-iteration").as_deref(), Some("2"));
    assert_eq!(testid(page, "loop-checkpoint").as_deref(), Some("2"));
    let state = testid(page, "loop-state").unwrap();
    assert!(state.contains("\"total\": 7"), "{state}");
    assert!(page.contains("data-testid=\"pending-signal\""), "{page}");
    assert!(
        page.contains("{&quot;n&quot;:5}"),
        "the pending body: {page}"
    );
    assert!(page.contains("team=a"));
    assert!(page.contains("data-testid=\"signal-form\""));

    // A parent links its child; a divergence links its location.
    let r = get(addr, &format!("/workflows/{parent}"), &[]).await;
    let page = ok(&r);
    let child = sleepers.iter().all(|s| !page.contains(&s.to_string()));
    assert!(child, "only the parent's own child is linked");
    assert!(page.contains("<h2>Children</h2>"), "{page}");
    let r = get(addr, &format!("/workflows/{shaped}"), &[]).await;
    let page = ok(&r);
    assert!(page.contains(octane::HISTORY_DIVERGED), "{page}");
    let at = testid(page, "diverged-at").expect("a link to the location");
    assert!(page.contains(&format!(
        "id=\"loc-{}\"",
        &at[1..at.len() - 1].replace(", ", "-")
    )));

    // Bad addresses are clear errors.
    let r = get(addr, "/workflows/not-an-id", &[]).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("`not-an-id` is not a workflow id"),
        "{}",
        r.body
    );
    let unknown = WorkflowId::new();
    let r = get(addr, &format!("/workflows/{unknown}"), &[]).await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains(&unknown.to_string()));
    assert_eq!(get(addr, "/workflows?state=bogus", &[]).await.status, 400);
    assert_eq!(get(addr, "/workflows?after=nope", &[]).await.status, 400);
    assert_eq!(get(addr, "/no/such/page", &[]).await.status, 404);
    let js = get(addr, "/assets/dashboard.js", &[]).await;
    assert!(ok(&js).contains("confirm"));
}

async fn actions_change_workflows_and_refuse_bad_requests(db: TestDb) {
    let engine = db
        .engine()
        .await
        .sleep_in_memory_below(Duration::ZERO)
        .register::<Adder>();
    let worker = fast_worker(&engine);
    let adder = engine.dispatch::<Adder>(()).await.unwrap();
    wait_state(&engine, adder, WorkflowState::Sleeping).await;
    let dash = engine.serve_dashboard(loopback()).await.unwrap();
    let addr = dash.addr();
    let page = get(addr, &format!("/workflows/{adder}"), &[]).await;
    let token = form_token(ok(&page));
    let signal_path = format!("/workflows/{adder}/signal");
    let post = |path: String,
                headers: Vec<(&'static str, String)>,
                form: Vec<(&'static str, String)>| async move {
        let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        request(addr, "POST", &path, &headers, Some(&fields)).await
    };
    let same_origin = vec![
        ("Origin", format!("http://{addr}")),
        ("Sec-Fetch-Site", "same-origin".to_string()),
    ];

    // A signal sent through the form reaches the loop.
    let r = post(
        signal_path.clone(),
        same_origin,
        vec![
            ("form_token", token.clone()),
            ("name", "add".into()),
            ("body", r#"{"n": 40}"#.into()),
        ],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let location = r.header("location").unwrap();
    assert!(
        location.starts_with(&format!("/workflows/{adder}?notice=")),
        "{location}"
    );
    eventually("the deposit", Duration::from_secs(30), || async {
        let s: octane::LoopState<Total> = engine.loop_state(adder).await.ok()?;
        (s.state.total == 40).then_some(())
    })
    .await;
    let followed = get(addr, location, &[]).await;
    assert!(ok(&followed).contains("signal `add` sent"));

    // Refused: not JSON (and nothing stored), no name, no form token,
    // another site's page.
    let r = post(
        signal_path.clone(),
        vec![],
        vec![
            ("form_token", token.clone()),
            ("name", "add".into()),
            ("body", "{n:".into()),
        ],
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("is not valid JSON"), "{}", r.body);
    assert!(engine.pending_signals(adder, 10).await.unwrap().is_empty());
    let r = post(
        signal_path.clone(),
        vec![],
        vec![("form_token", token.clone()), ("body", "1".into())],
    )
    .await;
    assert_eq!(r.status, 400);
    let r = post(
        signal_path.clone(),
        vec![],
        vec![("name", "add".into()), ("body", "{\"n\": 1}".into())],
    )
    .await;
    assert_eq!(r.status, 403, "no form token");
    for header in [
        ("Origin", "http://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
    ] {
        let r = post(
            signal_path.clone(),
            vec![(header.0, header.1.to_string())],
            vec![
                ("form_token", token.clone()),
                ("name", "add".into()),
                ("body", "{\"n\": 1}".into()),
            ],
        )
        .await;
        assert_eq!(r.status, 403, "{header:?}: {}", r.body);
    }
    assert!(engine.pending_signals(adder, 10).await.unwrap().is_empty());
    eventually("no second deposit", Duration::from_secs(5), || async {
        let s: octane::LoopState<Total> = engine.loop_state(adder).await.ok()?;
        (s.state.adds == 1).then_some(())
    })
    .await;

    // Unknown and malformed workflows.
    let unknown = WorkflowId::new();
    let r = post(
        format!("/workflows/{unknown}/cancel"),
        vec![],
        vec![("form_token", token.clone())],
    )
    .await;
    assert_eq!(r.status, 404);
    let r = post(
        "/workflows/xyz/wake".into(),
        vec![],
        vec![("form_token", token.clone())],
    )
    .await;
    assert_eq!(r.status, 400);

    // Cancel, then what no longer applies.
    let r = post(
        format!("/workflows/{adder}/cancel"),
        vec![],
        vec![("form_token", token.clone())],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        engine.get(adder).await.unwrap().state,
        WorkflowState::Cancelled
    );
    for action in ["cancel", "wake"] {
        let r = post(
            format!("/workflows/{adder}/{action}"),
            vec![],
            vec![("form_token", token.clone())],
        )
        .await;
        assert_eq!(r.status, 409, "{action}: {}", r.body);
    }
    let r = post(
        signal_path,
        vec![],
        vec![
            ("form_token", token.clone()),
            ("name", "add".into()),
            ("body", "{\"n\": 1}".into()),
        ],
    )
    .await;
    assert_eq!(r.status, 409, "a signal to a finished workflow");
    worker.shutdown().await;
}

async fn a_token_guards_every_request(db: TestDb) {
    let engine = db.engine().await;
    let err = engine
        .serve_dashboard("0.0.0.0:0".parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Dashboard { message, .. } if message.contains("token")),
        "{err}"
    );
    let dash = engine
        .dashboard()
        .token("s3cret")
        .serve(loopback())
        .await
        .unwrap();
    let addr = dash.addr();
    for path in ["/", "/workflows", "/assets/dashboard.js"] {
        assert_eq!(get(addr, path, &[]).await.status, 401, "{path}");
    }
    let r = get(addr, "/", &[("Authorization", "Bearer wrong")]).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("needs its token"), "{}", r.body);
    ok(&get(addr, "/", &[("Authorization", "Bearer s3cret")]).await);
    assert_eq!(get(addr, "/?token=wrong", &[]).await.status, 401);
    let r = get(addr, "/workflows?token=s3cret", &[]).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/workflows"));
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    ok(&get(addr, "/workflows", &[("Cookie", &cookie)]).await);

    // Beyond loopback with a token is allowed.
    let wide = engine
        .dashboard()
        .token("s3cret")
        .serve("0.0.0.0:0".parse().unwrap())
        .await
        .unwrap();
    let port = wide.addr().port();
    let r = get(
        format!("127.0.0.1:{port}").parse().unwrap(),
        "/",
        &[("Authorization", "Bearer s3cret")],
    )
    .await;
    ok(&r);
}

support::store_tests!(
    every_page_renders_from_the_database,
    actions_change_workflows_and_refuse_bad_requests,
    a_token_guards_every_request,
);
