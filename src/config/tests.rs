//! Tests of the configuration: flags, the tenants file and the caller files,
//! each failure naming the setting an operator would fix.

use super::*;
use crate::tenant::{AuthScheme, UpstreamPaths};
use clap::Parser as _;
use secrecy::ExposeSecret;

fn cli(args: &[&str]) -> Cli {
    let mut argv = vec!["mtr-sso"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).expect("arguments parse")
}

/// A fresh directory for a test's files.
fn scratch_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mtr-sso-cfg-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    dir
}

const MINIMAL: &[&str] = &[
    "--broker-api-url",
    "https://broker.example.com",
    "--api-key",
    "k-1",
    "--platform-url",
    "https://trade.broker.example.com",
];

#[test]
fn flags_make_one_default_tenant_with_the_vendor_defaults() {
    let settings = cli(MINIMAL).into_settings().expect("valid");
    let Upstream::Tenants { tenants, default_tenant } = settings.upstream else { panic!("expected tenants") };
    assert_eq!(default_tenant, "default");
    let tenant = &tenants[0];
    assert_eq!(tenant.paths, UpstreamPaths::default());
    assert_eq!(tenant.auth_scheme, AuthScheme::Raw);
    assert_eq!(tenant.session_lifetime, Duration::from_secs(900));
    assert_eq!(tenant.api_key.current().expose_secret(), "k-1");
}

#[cfg(feature = "sandbox")]
#[test]
fn the_sandbox_listens_on_loopback_by_default_and_production_on_all_interfaces() {
    assert_eq!(cli(&["--sandbox"]).into_settings().expect("valid").listen.to_string(), "127.0.0.1:50051");
    assert_eq!(cli(MINIMAL).into_settings().expect("valid").listen.to_string(), "0.0.0.0:50051");
}

#[cfg(feature = "sandbox")]
#[test]
fn the_sandbox_lifetimes_are_the_vendors_unless_set() {
    let lifetimes = |args: &[&str]| match cli(args).into_settings().expect("valid").upstream {
        Upstream::Sandbox(options) => (options.session_lifetime, options.refresh_token_lifetime),
        other => panic!("not the sandbox: {other:?}"),
    };
    assert_eq!(lifetimes(&["--sandbox"]), (Duration::from_secs(900), Duration::from_secs(86_400)));
    let set = ["--sandbox", "--sandbox-session-lifetime", "10s", "--sandbox-refresh-token-lifetime", "20s"];
    assert_eq!(lifetimes(&set), (Duration::from_secs(10), Duration::from_secs(20)));
}

#[test]
fn no_upstream_and_no_sandbox_is_refused_with_a_hint() {
    let err = cli(&[]).into_settings().expect_err("must refuse");
    assert!(err.to_string().contains("--sandbox"), "{err}");
}

#[cfg(feature = "sandbox")]
#[test]
fn sandbox_combined_with_a_real_upstream_is_refused() {
    let err = cli(&["--sandbox", "--platform-url", "https://x.example"]).into_settings().expect_err("refused");
    assert_eq!(err.setting, "--platform-url");
}

#[test]
fn a_relative_path_setting_names_the_flag() {
    let mut args = MINIMAL.to_vec();
    args.extend(["--login-path", "manager/co-login"]);
    let err = cli(&args).into_settings().expect_err("refused");
    assert_eq!(err.setting, "--login-path");
}

#[test]
fn a_cookie_domain_the_platform_does_not_share_is_refused() {
    let mut args = MINIMAL.to_vec();
    args.extend(["--cookie-domain", "other.com"]);
    let err = cli(&args).into_settings().expect_err("refused");
    assert_eq!(err.setting, "--cookie-domain");
    let mut args = MINIMAL.to_vec();
    args.extend(["--cookie-domain", ".broker.example.com"]);
    let settings = cli(&args).into_settings().expect("a parent domain is accepted");
    let Upstream::Tenants { tenants, .. } = settings.upstream else { panic!() };
    assert_eq!(tenants[0].cookie_domain.as_deref(), Some("broker.example.com"));
}

#[test]
fn api_key_file_is_read_without_its_trailing_newline() {
    let dir = scratch_dir();
    let key = dir.join("key");
    std::fs::write(&key, "file-key\n").expect("write");
    let args = [
        "--broker-api-url",
        "https://b.example.com",
        "--api-key-file",
        key.to_str().expect("utf8"),
        "--platform-url",
        "https://p.example.com",
    ];
    let settings = cli(&args).into_settings().expect("valid");
    let Upstream::Tenants { tenants, .. } = settings.upstream else { panic!() };
    assert_eq!(tenants[0].api_key.current().expose_secret(), "file-key");
}

#[test]
fn tenants_file_with_several_tenants_needs_a_default() {
    let dir = scratch_dir();
    let file = dir.join("tenants.toml");
    let tenant = |name: &str| {
        format!(
            "[tenants.{name}]\nbroker_api_url = \"https://b.{name}.com\"\napi_key = \"k\"\nplatform_url = \"https://p.{name}.com\"\n"
        )
    };
    std::fs::write(&file, format!("{}{}", tenant("acme"), tenant("globex"))).expect("write");
    let path = file.to_str().expect("utf8");
    let err = cli(&["--tenants-file", path]).into_settings().expect_err("needs default");
    assert!(err.setting.starts_with("default_tenant"), "{err}");

    std::fs::write(&file, format!("default_tenant = \"globex\"\n{}{}", tenant("acme"), tenant("globex")))
        .expect("write");
    let settings = cli(&["--tenants-file", path]).into_settings().expect("valid");
    let Upstream::Tenants { tenants, default_tenant } = settings.upstream else { panic!() };
    assert_eq!((tenants.len(), default_tenant.as_str()), (2, "globex"));

    std::fs::write(
        &file,
        "[tenants.acme]\nbroker_api_url = \"nope\"\napi_key = \"k\"\nplatform_url = \"https://p.com\"\n",
    )
    .expect("write");
    let err = cli(&["--tenants-file", path]).into_settings().expect_err("bad url");
    assert!(err.setting.starts_with("tenants.acme.broker_api_url"), "{err}");
}

#[test]
fn caller_authentication_needs_a_policy_and_a_policy_needs_a_way_to_authenticate() {
    let dir = scratch_dir();
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, "[callers.crm]\nrpcs = [\"Login\"]\n").expect("write");
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("crm {}\n", "x".repeat(32))).expect("write");
    let (policy, tokens) = (policy.to_str().expect("utf8"), tokens.to_str().expect("utf8"));
    let with = |extra: &[&str]| {
        let mut args = MINIMAL.to_vec();
        args.extend_from_slice(extra);
        cli(&args).into_settings()
    };
    assert_eq!(with(&["--policy-file", policy]).expect_err("no mechanism").setting, "--policy-file");
    assert_eq!(with(&["--caller-tokens-file", tokens]).expect_err("no policy").setting, "--caller-tokens-file");
    assert_eq!(with(&["--tls-cert", tokens]).expect_err("no key").setting, "--tls-key");
    assert_eq!(with(&["--tls-client-ca", tokens]).expect_err("no server cert").setting, "--tls-client-ca");
    let settings = with(&["--policy-file", policy, "--caller-tokens-file", tokens]).expect("valid");
    assert!(settings.callers.is_some_and(|c| c.accepts_tokens()));
    let bad_pem = with(&["--tls-cert", tokens, "--tls-key", tokens]).expect_err("not PEM");
    assert!(bad_pem.setting.starts_with("--tls-cert"), "{bad_pem}");
}

#[cfg(not(feature = "sandbox"))]
#[test]
fn a_build_without_the_sandbox_refuses_it_by_name() {
    let err = cli(&["--sandbox"]).into_settings().expect_err("no sandbox in this build");
    assert_eq!(err.setting, "--sandbox");
}

#[test]
fn a_default_validity_above_the_maximum_is_refused() {
    let mut args = MINIMAL.to_vec();
    args.extend(["--one-time-token-validity", "2h"]);
    let err = cli(&args).into_settings().expect_err("refused");
    assert_eq!(err.setting, "--one-time-token-validity");
}

fn tenants_file_error(content: &str) -> ConfigError {
    let dir = scratch_dir();
    let file = dir.join("tenants.toml");
    std::fs::write(&file, content).expect("write");
    cli(&["--tenants-file", file.to_str().expect("utf8")]).into_settings().expect_err("refused")
}

const V2_TENANT: &str = "[tenants.acme]\nbroker_api_generation = \"v2\"\nbroker_api_url = \"https://b.acme.com\"\n\
                         api_key = \"k\"\nplatform_url = \"https://p.acme.com\"\n";

#[test]
fn generation_v2_brings_bearer_and_its_own_paths_and_the_default_stays_v1() {
    use crate::tenant::Generation;
    let settings = cli(MINIMAL).into_settings().expect("valid");
    let Upstream::Tenants { tenants, .. } = settings.upstream else { panic!() };
    assert_eq!(tenants[0].generation, Generation::V1);

    let mut args = MINIMAL.to_vec();
    args.extend([
        "--broker-api-generation",
        "v2",
        "--trading-account-group",
        "retail",
        "--trading-account-type",
        "demo",
    ]);
    args.extend(["--trading-account-leverage-ratio-percent", "10000"]);
    let settings = cli(&args).into_settings().expect("valid");
    let Upstream::Tenants { tenants, .. } = settings.upstream else { panic!() };
    let tenant = &tenants[0];
    assert_eq!((tenant.generation, tenant.auth_scheme), (Generation::V2, AuthScheme::Bearer));
    assert_eq!(tenant.paths.create_account, "/v1/user-accounts");
    assert_eq!(tenant.paths.account_by_email, "/v1/user-accounts/email/{email}");
    let defaults = tenant.trading_account.as_ref().expect("a default trading account");
    assert_eq!((defaults.group.as_str(), defaults.leverage_ratio_percent), ("retail", 10000));

    let mut args = MINIMAL.to_vec();
    args.extend(["--broker-api-generation", "crm"]);
    let settings = cli(&args).into_settings().expect("valid");
    let Upstream::Tenants { tenants, .. } = settings.upstream else { panic!() };
    assert_eq!((tenants[0].auth_scheme, tenants[0].paths.create_account.as_str()), (AuthScheme::Raw, "/v1/accounts"));
}

#[test]
fn a_v2_setting_on_a_v1_tenant_stops_the_service_naming_it() {
    let mut args = MINIMAL.to_vec();
    args.extend(["--trading-account-group", "retail"]);
    let err = cli(&args).into_settings().expect_err("refused");
    assert_eq!(err.setting, "--trading-account-group");
    assert!(err.problem.contains("v2"), "{err}");

    let err = tenants_file_error(&format!(
        "{}[tenants.old]\nbroker_api_url = \"https://b.old.com\"\napi_key = \"k\"\nplatform_url = \"https://p.old.com\"\n\
         [tenants.old.paths]\ntrading_accounts = \"/x/{{uuid}}\"\n",
        V2_TENANT
    ));
    assert!(err.setting.starts_with("tenants.old.paths.trading_accounts"), "{err}");
}

#[test]
fn a_partial_default_trading_account_names_the_missing_setting() {
    let err = tenants_file_error(&format!("{V2_TENANT}[tenants.acme.trading_account]\ngroup = \"retail\"\n"));
    assert!(err.setting.starts_with("tenants.acme.trading_account.leverage_ratio_percent"), "{err}");
    let err = tenants_file_error(&format!(
        "{V2_TENANT}[tenants.acme.trading_account]\ngroup = \"retail\"\nleverage_ratio_percent = 100\n"
    ));
    assert!(err.setting.starts_with("tenants.acme.trading_account.account_type"), "{err}");
    let err = tenants_file_error(&format!(
        "{V2_TENANT}[tenants.acme.trading_account]\ngroup = \"g\"\nleverage_ratio_percent = 0\naccount_type = \"REAL\"\n"
    ));
    assert!(err.setting.starts_with("tenants.acme.trading_account.leverage_ratio_percent"), "{err}");
}

#[test]
fn an_unknown_generation_is_refused_naming_its_line_and_key() {
    let err = tenants_file_error(V2_TENANT.replace("\"v2\"", "\"v3\"").as_str());
    assert!(err.setting.contains("line 2 (broker_api_generation)"), "{err}");
    assert!(err.problem.contains("v3") && err.problem.contains("crm"), "{err}");
    let flag = Cli::try_parse_from(["mtr-sso", "--broker-api-generation", "v3"]).expect_err("refused by the parser");
    assert!(flag.to_string().contains("--broker-api-generation"), "{flag}");
}

#[test]
fn a_quota_wait_defaults_to_two_seconds_may_be_zero_and_never_exceeds_the_window() {
    let with = |extra: &[&str]| {
        let mut args = MINIMAL.to_vec();
        args.extend_from_slice(extra);
        cli(&args).into_settings()
    };
    let defaults = with(&[]).expect("valid");
    assert_eq!((defaults.quota_max_wait, defaults.limit_window), (Duration::from_secs(2), Duration::from_secs(60)));
    assert_eq!(with(&["--quota-max-wait", "0"]).expect("valid").quota_max_wait, Duration::ZERO);
    let error = with(&["--quota-max-wait", "90s"]).expect_err("longer than the window");
    assert_eq!(error.setting, "--quota-max-wait");
    assert!(error.problem.contains("1m"), "{}", error.problem);
    let error = with(&["--limit-window", "0s"]).expect_err("no window");
    assert_eq!(error.setting, "--limit-window");
}
