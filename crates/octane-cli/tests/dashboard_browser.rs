//! The dashboard in a real headless browser (Debian's `chromium` and
//! `chromedriver`) while `octane demo` runs: find the wallet loop, read its
//! iteration and state off the page, send it a signal through the form,
//! and watch the page show the loop take it.
//!
//! Without the browser the test says so and passes, unless
//! `OCTANE_REQUIRE_BROWSER` is set (as `.ci/run` sets it): then it fails.
//! With `OCTANE_SCREENSHOTS` set to a directory, it saves the overview and
//! the wallet's page there.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn installed(path: &str) -> Option<PathBuf> {
    Path::new(path).exists().then(|| PathBuf::from(path))
}

/// Starts the demo with its dashboard; returns it with the wallet's id and
/// the dashboard's address once it serves.
fn start_demo(dir: &Path, port: u16) -> (Killed, String) {
    let mut demo = Command::new(env!("CARGO_BIN_EXE_octane"))
        .args(["demo", "--crash-at", "2", "--file"])
        .arg(dir.join("demo.db"))
        .arg("--dashboard-addr")
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo");
    let stdout = demo.stdout.take().unwrap();
    let demo = Killed(demo);
    let mut wallet = None;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.expect("demo output");
        if let Some(rest) = line.strip_prefix("Wallet ") {
            wallet = rest.split_whitespace().next().map(str::to_string);
        }
        if line.starts_with("Dashboard: ") {
            // The demo goes on printing what it replays: keep reading.
            std::thread::spawn(move || lines.for_each(drop));
            return (demo, wallet.expect("the demo names its wallet"));
        }
    }
    panic!("the demo ended before serving its dashboard");
}

/// The text of the first element matching `css`, read in one script: the
/// page replaces its live part every two seconds, so an element found in
/// one call may be gone by the next.
async fn text(client: &Client, css: &str) -> String {
    let value = client
        .execute(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            vec![serde_json::json!(css)],
        )
        .await
        .expect("run a script in the page");
    value
        .as_str()
        .unwrap_or_else(|| panic!("no `{css}` on the page"))
        .to_string()
}

async fn screenshot(client: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("OCTANE_SCREENSHOTS") {
        let png = client.screenshot().await.expect("a screenshot");
        std::fs::write(Path::new(&dir).join(name), png).expect("save the screenshot");
    }
}

/// Waits until the page, refreshing itself, shows the loop at `iteration`
/// with `state`.
async fn until_loop(client: &Client, iteration: &str, state: serde_json::Value) {
    let started = Instant::now();
    loop {
        let shown = text(client, "[data-testid=loop-iteration]").await;
        let raw = text(client, "[data-testid=loop-state]").await;
        let shown_state: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
        if shown == iteration && shown_state == state {
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let page = client.source().await.unwrap_or_default();
            panic!("the page still shows iteration {shown}, state {raw}; expected {iteration}, {state}:\n{page}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn the_demo_wallet_takes_a_signal_sent_from_its_page() {
    let (Some(chromium), Some(chromedriver)) = (
        installed("/usr/bin/chromium"),
        installed("/usr/bin/chromedriver"),
    ) else {
        let why = "the browser test needs /usr/bin/chromium and /usr/bin/chromedriver \
                   (Debian: apt install chromium chromium-driver)";
        assert!(
            std::env::var_os("OCTANE_REQUIRE_BROWSER").is_none(),
            "{why}"
        );
        eprintln!("SKIPPED: {why}");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_demo, wallet) = start_demo(dir.path(), port);
    let base = format!("http://127.0.0.1:{port}");

    let driver_port = free_port();
    let _driver = Killed(
        Command::new(chromedriver)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let profile = dir.path().join("profile");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let started = Instant::now();
    let client = loop {
        let attempt = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await;
        match attempt {
            Ok(client) => break client,
            Err(e) if started.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("chromedriver did not start a browser: {e}"),
        }
    };

    client.goto(&base).await.unwrap();
    assert!(text(&client, "h1").await.contains("Overview"));
    screenshot(&client, "dashboard-overview.png").await;

    // Find the loop workflow from the list, as a user would.
    client
        .goto(&format!("{base}/workflows?name=wallet"))
        .await
        .unwrap();
    client
        .find(Locator::Css("tr[data-workflow] a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let url = client.current_url().await.unwrap();
    assert!(
        url.as_str().ends_with(&format!("/workflows/{wallet}")),
        "{url}"
    );
    // The demo's three deposits, once the loop has taken them.
    until_loop(
        &client,
        "3",
        serde_json::json!({"cents": 400, "deposits": 3}),
    )
    .await;

    // Send a deposit through the form, confirming the dialog.
    let form = client
        .find(Locator::Css("[data-testid=signal-form]"))
        .await
        .unwrap();
    form.find(Locator::Css("input[name=name]"))
        .await
        .unwrap()
        .send_keys("deposit")
        .await
        .unwrap();
    let body = form
        .find(Locator::Css("textarea[name=body]"))
        .await
        .unwrap();
    body.clear().await.unwrap();
    body.send_keys(r#"{"cents": 500}"#).await.unwrap();
    form.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client.accept_alert().await.expect("the action asks first");
    assert!(text(&client, "[data-testid=notice]")
        .await
        .contains("signal `deposit` sent"));

    // The page refreshes itself: the loop's next checkpoint shows up
    // without a reload.
    until_loop(
        &client,
        "4",
        serde_json::json!({"cents": 900, "deposits": 4}),
    )
    .await;
    screenshot(&client, "dashboard-loop.png").await;
    client.close().await.unwrap();
}
