//! `--check-upstream` through the real binary: against the sandbox every
//! check passes and it exits 0; a tenant with a mixed-up key or broker id
//! fails its row and the run exits 1; a v2 tenant pointed at a v1 host fails
//! naming that (and a wrong key, when it is wrong too). A 400 on the lookup
//! probe is inconclusive (exit 0, its title printed), a CRM-API without
//! `/service-info` is checked with `/v1/offers`, and a `cf-mitigated` 403 is
//! bot protection (exit 1). No secret is ever printed. A setting that does
//! not fit a tenant's generation already fails `--check-config`.

use crate::common;
use common::BINARY;
use mtr_sso::sandbox::{
    BAD_REQUEST_TITLE, CRM_API_PREFIX, FaultKind, SANDBOX_API_KEY, SANDBOX_V2_API_KEY, Sandbox, SandboxOptions,
    Switches,
};
use std::process::{Command, Stdio};

/// Runs the binary to its end off the runtime, so an in-process sandbox keeps answering.
async fn run(args: Vec<String>) -> (Option<i32>, String, String) {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BINARY).args(&args).env_clear().stdin(Stdio::null()).output().expect("runs")
    })
    .await
    .expect("joined");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code(), text(&output.stdout), text(&output.stderr))
}

fn row<'a>(table: &'a str, tenant: &str, check: &str) -> &'a str {
    table
        .lines()
        .find(|line| {
            let mut columns = line.split_whitespace();
            columns.next() == Some(tenant) && columns.next() == Some(check)
        })
        .unwrap_or_else(|| panic!("no row {tenant} {check} in\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_the_sandbox_every_check_of_both_tenants_passes() {
    let (code, table, stderr) = run(vec!["--check-upstream".into(), "--sandbox".into()]).await;
    assert_eq!(code, Some(0), "{table}{stderr}");
    assert!(table.starts_with("TENANT"), "{table}");
    for tenant in ["default", "v2"] {
        for check in ["broker-api", "generation", "lookup", "platform"] {
            let line = row(&table, tenant, check);
            assert!(line.contains(" ok "), "{line}");
        }
        assert!(row(&table, tenant, "cookie-domain").contains("skipped"));
    }
    assert!(row(&table, "v2", "broker-api").contains("answered a page of user accounts"), "{table}");
    assert!(row(&table, "v2", "generation").contains("only Broker-API v2 has"), "{table}");
    assert!(row(&table, "default", "broker-api").contains("GET /service-info answered 2xx"), "{table}");
    assert!(!table.contains(SANDBOX_API_KEY) && !table.contains(SANDBOX_V2_API_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_up_key_or_broker_id_fails_its_row_and_the_run() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox starts");
    let base = sandbox.base_url().as_str().trim_end_matches('/').to_string();
    // The v2 tenant was given the v1 key; the v1 tenant another broker's id.
    let file = common::tenants_file(
        &format!("preflight-{}", uuid::Uuid::new_v4()),
        &format!(
            "default_tenant = \"old\"\n\
             [tenants.old]\nbroker_api_url = \"{base}\"\napi_key = \"{SANDBOX_API_KEY}\"\nplatform_url = \"{base}\"\n\
             broker_id = \"2\"\n\
             [tenants.new]\nbroker_api_generation = \"v2\"\nbroker_api_url = \"{base}/broker-api-v2\"\n\
             api_key = \"{SANDBOX_API_KEY}\"\nplatform_url = \"{base}\"\nbroker_id = \"1\"\n"
        ),
    );
    let args = vec!["--check-upstream".into(), "--tenants-file".into(), file.to_string_lossy().into_owned()];
    let (code, table, stderr) = run(args).await;
    assert_eq!(code, Some(1), "{table}{stderr}");
    let key = row(&table, "new", "broker-api");
    assert!(key.contains("FAIL") && key.contains("the key is refused"), "{key}");
    assert!(row(&table, "old", "broker-api").contains(" ok "), "{table}");
    let broker = row(&table, "old", "platform");
    assert!(broker.contains("FAIL") && broker.contains("partnerId 1") && broker.contains("broker id is 2"), "{broker}");
    assert!(row(&table, "new", "platform").contains(" ok "), "{table}");
    assert!(!table.contains(SANDBOX_API_KEY) && !stderr.contains(SANDBOX_API_KEY));
    let stats = sandbox.stats();
    for write in ["create_account", "create_user_account", "issue_one_time_token", "v2_issue_one_time_token"] {
        assert!(!stats.contains_key(write), "the preflight only reads: {stats:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_setting_on_a_v1_tenant_fails_check_config_with_one_line_naming_it() {
    let args =
        ["--broker-api-url", "https://b.example.com", "--api-key", "k", "--platform-url", "https://p.example.com"];
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.extend(["--trading-account-type".into(), "demo".into(), "--check-config".into()]);
    let (code, stdout, stderr) = run(args).await;
    assert_eq!(code, Some(64), "{stdout}{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--trading-account-type") && stderr.contains("v2"), "{stderr}");
}

/// A sandbox, and a tenants file with one tenant `t` on `generation` at
/// `broker_path` of the sandbox with `key`.
async fn one_tenant(generation: &str, broker_path: &str, key: &str) -> (Sandbox, Vec<String>) {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox starts");
    let base = sandbox.base_url().as_str().trim_end_matches('/').to_string();
    let file = common::tenants_file(
        &format!("preflight-{}", uuid::Uuid::new_v4()),
        &format!(
            "default_tenant = \"t\"\n[tenants.t]\nbroker_api_generation = \"{generation}\"\n\
             broker_api_url = \"{base}{broker_path}\"\napi_key = \"{key}\"\nplatform_url = \"{base}\"\nbroker_id = \"1\"\n"
        ),
    );
    (sandbox, vec!["--check-upstream".into(), "--tenants-file".into(), file.to_string_lossy().into_owned()])
}

fn faulty(fault: FaultKind, prefix: &str, contains: &str) -> Switches {
    Switches { fault, fault_path_prefix: prefix.into(), fault_path_contains: contains.into(), ..Switches::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_tenant_on_a_v1_host_fails_naming_the_host_and_with_a_wrong_key_the_key_too() {
    // The right key of that v1 host: the key row cannot prove it for v2, the generation row names the mix-up.
    let (_sandbox, args) = one_tenant("v2", "", SANDBOX_API_KEY).await;
    let (code, table, stderr) = run(args).await;
    assert_eq!(code, Some(1), "{table}{stderr}");
    let generation = row(&table, "t", "generation");
    assert!(generation.contains("FAIL") && generation.contains("a v1 or CRM-API host under a v2 setting"), "{table}");
    let key = row(&table, "t", "broker-api");
    assert!(key.contains("unsure") && key.contains("accepts the key"), "{table}");
    assert!(!key.contains("refused"), "{key}");
    // A wrong key on the same host: the key row says so, the generation row still names the host.
    let (_sandbox, args) = one_tenant("v2", "", SANDBOX_V2_API_KEY).await;
    let (code, table, stderr) = run(args).await;
    assert_eq!(code, Some(1), "{table}{stderr}");
    let key = row(&table, "t", "broker-api");
    assert!(key.contains("FAIL") && key.contains("the key is refused") && key.contains("401"), "{table}");
    let generation = row(&table, "t", "generation");
    assert!(generation.contains("FAIL") && generation.contains("a v1 or CRM-API host under a v2 setting"), "{table}");
    assert!(!table.contains(SANDBOX_API_KEY) && !table.contains(SANDBOX_V2_API_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v1_sandbox_answers_v2_paths_with_404() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox starts");
    mtr_sso::upstream::install_crypto_provider();
    let client = reqwest::Client::new();
    for path in ["v1/user-accounts?page=0&size=1", "v1/user-accounts/email/a@b.co"] {
        let url = sandbox.base_url().join(path).expect("url");
        let answer = client.get(url).header("authorization", SANDBOX_API_KEY).send().await.expect("sent");
        assert_eq!(answer.status(), 404, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_on_the_lookup_probe_is_inconclusive_with_its_title_and_exits_0() {
    let (sandbox, args) = one_tenant("v2", "/broker-api-v2", SANDBOX_V2_API_KEY).await;
    sandbox.set_switches(faulty(FaultKind::BadRequest, "/broker-api-v2", "/email/"));
    let (code, table, stderr) = run(args).await;
    assert_eq!(code, Some(0), "inconclusive is not a failure: {table}{stderr}");
    let lookup = row(&table, "t", "lookup");
    assert!(lookup.contains("unsure") && lookup.contains("400") && lookup.contains(BAD_REQUEST_TITLE), "{table}");
    assert!(row(&table, "t", "broker-api").contains(" ok "), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_api_without_service_info_proves_the_key_with_offers() {
    let (sandbox, args) = one_tenant("crm", CRM_API_PREFIX, SANDBOX_API_KEY).await;
    sandbox.set_switches(faulty(FaultKind::NotFound, CRM_API_PREFIX, "/service-info"));
    let (code, table, stderr) = run(args).await;
    assert_eq!(code, Some(0), "{table}{stderr}");
    let key = row(&table, "t", "broker-api");
    assert!(key.contains(" ok ") && key.contains("GET /v1/offers") && key.contains("404"), "{table}");
    assert!(row(&table, "t", "generation").contains(" ok "), "{table}");
    assert_eq!(sandbox.stats().get("offers"), Some(&1));
    // The same CRM-API with a wrong key: refused, not passed on the 404.
    let (sandbox, args) = one_tenant("crm", CRM_API_PREFIX, "not-the-key").await;
    sandbox.set_switches(faulty(FaultKind::NotFound, CRM_API_PREFIX, "/service-info"));
    let (code, table, _) = run(args).await;
    assert_eq!(code, Some(1), "{table}");
    assert!(row(&table, "t", "broker-api").contains("the key is refused: GET /v1/offers answered 401"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cf_mitigated_403_is_bot_protection_with_what_to_ask_the_vendor_and_exits_1() {
    let (sandbox, args) = one_tenant("v2", "/broker-api-v2", SANDBOX_V2_API_KEY).await;
    sandbox.set_switches(faulty(FaultKind::BotChallenge, "", ""));
    let (code, table, stderr) = run(args).await;
    assert_eq!(code, Some(1), "{table}{stderr}");
    for check in ["broker-api", "lookup", "platform"] {
        let line = row(&table, "t", check);
        assert!(line.contains("FAIL") && line.contains("bot protection") && line.contains("ask the vendor"), "{line}");
        assert!(!line.contains("key is refused"), "{line}");
    }
    assert!(row(&table, "t", "generation").contains("unsure"), "{table}");
}
