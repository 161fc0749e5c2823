//! The OpenAPI document against the edge: for each rule the document states
//! for a request field (`build/field_rules.rs`), a corpus of values, some
//! valid and many almost valid, goes through both the schema's keywords and
//! the code that checks the field (pbjson's parser, then `convert`). They
//! must agree on every value, so that schemathesis' positive and negative
//! runs cannot find a value the two judge differently, and a change to
//! either side that the other does not follow fails here.

use regex::Regex;
use serde_json::{Value, json};

use super::{OPENAPI_DOCUMENT, wire};
use crate::{
    convert::{self, limits},
    error::SsoError,
    proto,
    tenant::{TenantOptions, TenantSettings},
};

fn schemas() -> Value {
    let document: Value = serde_json::from_str(OPENAPI_DOCUMENT).expect("the document is JSON");
    document["components"]["schemas"].clone()
}

fn property(message: &str, field: &str) -> Value {
    let schema = schemas()[message]["properties"][field].clone();
    assert!(schema.is_object(), "{message}.{field} is in the document");
    schema
}

/// What the schema's string keywords (and `not`) say of `value`. `format: email` adds
/// the one bound its pattern leaves to the format: 64 characters before `@`.
fn schema_accepts(schema: &Value, value: &str) -> bool {
    let chars = value.chars().count() as u64;
    let pattern_ok = schema["pattern"]
        .as_str()
        .is_none_or(|pattern| Regex::new(pattern).expect("the pattern compiles").is_match(value));
    let min_ok = schema["minLength"].as_u64().is_none_or(|min| chars >= min);
    let max_ok = schema["maxLength"].as_u64().is_none_or(|max| chars <= max);
    let format_ok = schema["format"] != "email"
        || value.split_once('@').is_some_and(|(local, _)| local.chars().count() <= limits::MAX_EMAIL_LOCAL_CHARS);
    let not_ok = schema.get("not").is_none_or(|excluded| !schema_accepts(excluded, value));
    pattern_ok && min_ok && max_ok && format_ok && not_ok
}

/// Values near every edge the rules have.
fn corpus() -> Vec<String> {
    let mut values: Vec<String> = [
        "",
        " ",
        "a",
        "\t",
        "a b",
        " a",
        "a\u{7f}",
        "a\u{85}",
        "\u{a0}",
        "\u{3000}x",
        "\u{2028}",
        "\u{feff}",
        "ü",
        "x\n",
        "a@b.co",
        "A@B.CO",
        "a..b@b.co",
        ".a@b.co",
        "a.@b.co",
        "a@b",
        "a@-b.co",
        "a@b-.co",
        "a@b_c.co",
        "a@[1.2.3.4]",
        "\"a\"@b.co",
        "ü@b.co",
        "a@bü.co",
        "a@@b.co",
        "a b@c.co",
        "a@b.co ",
        "!#$%&'*+/=?^_`{|}~-@x.io",
        "a(b@x.io",
        "a@1.2",
        "123e4567-e89b-12d3-a456-426614174000",
        "123E4567-E89B-12D3-A456-426614174000",
        "{123e4567-e89b-12d3-a456-426614174000}",
        "urn:uuid:123e4567-e89b-12d3-a456-426614174000",
        "123e4567e89b12d3a456426614174000",
        "123e4567-e89b-12d3-a456-42661417400g",
        "1990-01-31",
        "1990-02-29",
        "2000-02-29",
        "1900-02-29",
        "1990-13-01",
        "1990-1-01",
        "+1990-01-01",
        "0000-01-01",
        "1990-04-31",
        "1990-02-28",
        "1990-01-31T00:00:00Z",
        "k-1",
        "a;b",
        "a\"b",
        "a,b",
        "a\\b",
        "abc.DEF-123_~",
        // A session token (a JWT) where a refresh token belongs.
        "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2ln-_x",
    ]
    .map(String::from)
    .to_vec();
    for length in [63, 64, 65, 127, 128, 129, 255, 256, 257, 4095, 4096, 4097] {
        values.push("x".repeat(length));
        values.push("é".repeat(length));
    }
    for local in [64, 65] {
        values.push(format!("{}@b.co", "a".repeat(local)));
    }
    for label in [63, 64] {
        values.push(format!("a@{}.co", "b".repeat(label)));
    }
    for total in [254, 255] {
        let domain = ["c".repeat(63), "c".repeat(63), "c".repeat(63)].join(".");
        let local = "a".repeat(total - 1 - domain.len() - 3);
        values.push(format!("{local}@{domain}.io"));
    }
    values
}

fn tenant() -> TenantSettings {
    let options: TenantOptions =
        toml::from_str("broker_api_url = \"https://broker.example\"\napi_key = \"k\"\nplatform_url = \"https://platform.example\"\nbroker_id = \"1\"\n")
            .expect("options");
    options.resolve("contract").expect("a tenant with the defaults")
}

fn violates(result: Result<impl Sized, SsoError>, field: &str) -> bool {
    match result {
        Ok(_) => false,
        Err(SsoError::InvalidArgument { violations, .. }) => violations.iter().any(|v| v.field == field),
        Err(other) => panic!("not a validation error: {other:?}"),
    }
}

fn account() -> proto::CreateAccountRequest {
    proto::CreateAccountRequest {
        email: "a@b.co".into(),
        password: "pw".into(),
        personal_details: Some(proto::PersonalDetails {
            firstname: "A".into(),
            lastname: "B".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Asserts that the schema and `code_accepts` agree on every value of `values`.
fn assert_agree(name: &str, schema: &Value, values: &[String], code_accepts: impl Fn(&str) -> bool) {
    let disagreements: Vec<String> = values
        .iter()
        .filter(|value| schema_accepts(schema, value) != code_accepts(value))
        .map(|value| {
            format!("{:?} (schema: {})", value.chars().take(40).collect::<String>(), schema_accepts(schema, value))
        })
        .collect();
    assert!(disagreements.is_empty(), "{name}: the schema and the code disagree on {disagreements:#?}");
}

#[test]
fn the_email_rule_is_the_codes() {
    let tenant = tenant();
    assert_agree("email", &property("LoginRequest", "email"), &corpus(), |value| {
        !violates(
            convert::login(
                proto::LoginRequest { email: value.into(), password: "pw".into(), ..Default::default() },
                &tenant,
            ),
            "email",
        )
    });
    for message in ["CreateAccountRequest", "IssueOneTimeTokenRequest"] {
        assert_eq!(property("LoginRequest", "email")["pattern"], property(message, "email")["pattern"], "{message}");
    }
}

#[test]
fn the_secret_and_refresh_token_rules_are_the_codes() {
    let tenant = tenant();
    assert_agree("password", &property("LoginRequest", "password"), &corpus(), |value| {
        !violates(
            convert::login(
                proto::LoginRequest { email: "a@b.co".into(), password: value.into(), ..Default::default() },
                &tenant,
            ),
            "password",
        )
    });
    assert_agree("refreshToken", &property("RefreshRequest", "refreshToken"), &corpus(), |value| {
        !violates(
            convert::refresh(proto::RefreshRequest { refresh_token: value.into(), ..Default::default() }),
            "refresh_token",
        )
    });
}

#[test]
fn the_text_rules_are_the_codes() {
    assert_agree("firstname", &property("PersonalDetails", "firstname"), &corpus(), |value| {
        let mut request = account();
        if let Some(personal) = request.personal_details.as_mut() {
            personal.firstname = value.into();
        }
        !violates(convert::create_account(request), "personal_details.firstname")
    });
    assert_agree("city", &property("AddressDetails", "city"), &corpus(), |value| {
        let mut request = account();
        request.address_details = Some(proto::AddressDetails { city: value.into(), ..Default::default() });
        !violates(convert::create_account(request), "address_details.city")
    });
    let tenant = tenant();
    assert_agree("brokerId", &property("LoginRequest", "brokerId"), &corpus(), |value| {
        let request = proto::LoginRequest {
            email: "a@b.co".into(),
            password: "pw".into(),
            broker_id: value.into(),
            ..Default::default()
        };
        !violates(convert::login(request, &tenant), "broker_id")
    });
    let scope = property("CrmUserScope", "branchScope");
    assert_agree("branchScope", &scope["items"], &corpus(), |value| {
        let mut request = account();
        request.account_configuration = Some(proto::AccountConfiguration {
            crm_user_scope: Some(proto::CrmUserScope { branch_scope: vec![value.into()], ..Default::default() }),
            ..Default::default()
        });
        !violates(convert::create_account(request), "account_configuration.crm_user_scope")
    });
}

#[test]
fn the_uuid_date_and_idempotency_key_rules_are_the_codes() {
    assert_agree("offerUuid", &property("CreateAccountRequest", "offerUuid"), &corpus(), |value| {
        let request = proto::CreateAccountRequest { offer_uuid: value.into(), ..account() };
        !violates(convert::create_account(request), "offer_uuid")
    });
    assert_agree("idempotencyKey", &property("CreateAccountRequest", "idempotencyKey"), &corpus(), |value| {
        let request = proto::CreateAccountRequest { idempotency_key: value.into(), ..account() };
        !violates(convert::create_account(request), "idempotency_key")
    });
    let born = |value: &str| {
        let mut request = account();
        if let Some(personal) = request.personal_details.as_mut() {
            personal.date_of_birth = value.into();
        }
        !violates(convert::create_account(request), "personal_details.date_of_birth")
    };
    assert_agree("dateOfBirth", &property("PersonalDetails", "dateOfBirth"), &corpus(), born);
    // The one rule a static document cannot state: the date is not in the future.
    assert!(schema_accepts(&property("PersonalDetails", "dateOfBirth"), "9999-12-31") && !born("9999-12-31"));
}

/// What the JSON side makes of `body`: pbjson's parser, then the edge.
fn issue_accepts(body: &Value, tenant: &TenantSettings) -> bool {
    let Ok(message) = serde_json::from_value::<wire::IssueOneTimeTokenRequest>(body.clone()) else { return false };
    let request: proto::IssueOneTimeTokenRequest = wire::transcode(&message).expect("transcodes");
    convert::issue_one_time_token(request, tenant).is_ok()
}

#[test]
fn the_validity_pattern_is_what_the_parser_and_the_edge_take_as_whole_seconds_up_to_the_default_maximum() {
    let tenant = tenant();
    assert_eq!(tenant.one_time_token_max_validity.as_secs(), limits::DEFAULT_MAX_ONE_TIME_TOKEN_VALIDITY_SECS);
    let mut values: Vec<String> = [
        "1s",
        "0s",
        "3600s",
        "3601s",
        "+5s",
        "005s",
        "1.0s",
        "1.5s",
        "1.000000000s",
        "1.0000000000s",
        "-5s",
        "1.+0s",
        "1.+00000000s",
        "1.+000000000s",
        "5",
        "5S",
        " 5s",
        "1e3s",
        "+0s",
        "0003600s",
        "3600.000s",
        "3599.999999999s",
        "99999999999999999999s",
        "s",
        ".5s",
        "1.s",
        "-0s",
        "+-1s",
    ]
    .map(String::from)
    .to_vec();
    values.extend(corpus());
    let schema = property("IssueOneTimeTokenRequest", "validity");
    assert_agree("validity", &schema, &values, |value| {
        issue_accepts(&json!({ "email": "a@b.co", "validity": value }), &tenant)
    });
}

#[test]
fn integers_and_enums_are_read_as_the_document_says_numbers_or_strings() {
    let leverage = property("TradingAccountSettings", "leverageRatioPercent");
    let as_string = &leverage["oneOf"][1];
    let parses = |value: &Value| {
        let body = json!({ "email": "a@b.co", "password": "pw", "personalDetails": { "firstname": "A", "lastname": "B" },
                           "tradingAccount": { "leverageRatioPercent": value } });
        serde_json::from_value::<wire::CreateAccountRequest>(body).is_ok()
    };
    let values: Vec<String> =
        ["0", "+0", "007", "4294967295", "4294967296", "-1", "-0", "1.0", "1e3", " 1", ""].map(String::from).to_vec();
    assert_agree("leverageRatioPercent as a string", as_string, &values, |value| parses(&json!(value)));
    assert!(parses(&json!(4_294_967_295_u32)) && !parses(&json!(4_294_967_296_u64)) && !parses(&json!(-1)));
    assert_eq!(leverage["oneOf"][0]["maximum"], json!(u32::MAX));

    let partner = property("AccountConfiguration", "partnerId");
    let values: Vec<String> =
        ["9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809", "+00012", "-0"]
            .map(String::from)
            .to_vec();
    assert_agree("partnerId as a string", &partner["oneOf"][1], &values, |value| {
        let body = json!({ "email": "a@b.co", "password": "pw", "personalDetails": { "firstname": "A", "lastname": "B" },
                           "accountConfiguration": { "partnerId": value } });
        serde_json::from_value::<wire::CreateAccountRequest>(body).is_ok()
    });

    let client_types = &schemas()["ClientType"];
    for value in [json!("CLIENT_TYPE_RETAIL"), json!(1), json!(3), json!(4), json!("RETAIL"), json!(-1)] {
        let body = json!({ "email": "a@b.co", "password": "pw", "personalDetails": { "firstname": "A", "lastname": "B" },
                           "clientType": value });
        let listed = [0, 1]
            .iter()
            .any(|form| client_types["oneOf"][form]["enum"].as_array().is_some_and(|values| values.contains(&value)));
        assert_eq!(serde_json::from_value::<wire::CreateAccountRequest>(body).is_ok(), listed, "{value}");
    }
}

#[test]
fn required_and_nullable_follow_the_field_behavior_annotations_and_the_parser() {
    let schemas = schemas();
    assert_eq!(schemas["CreateAccountRequest"]["required"], json!(["email", "password", "personalDetails"]));
    assert_eq!(schemas["PersonalDetails"]["required"], json!(["firstname", "lastname"]));
    assert_eq!(schemas["IssueOneTimeTokenRequest"]["required"], json!(["email"]));
    assert_eq!(schemas["LoginRequest"]["required"], json!(["email", "password"]));
    assert_eq!(schemas["RefreshRequest"]["required"], json!(["refreshToken"]));
    assert_eq!(schemas["Session"]["properties"]["accessToken"]["readOnly"], true, "OUTPUT_ONLY");
    // `null` reads as "not set" where a field has presence, and is refused elsewhere.
    let base = json!({ "email": "a@b.co", "password": "pw", "personalDetails": { "firstname": "A", "lastname": "B" } });
    for (field, schema) in schemas["CreateAccountRequest"]["properties"].as_object().expect("properties") {
        let mut body = base.clone();
        body[field] = Value::Null;
        let parsed = serde_json::from_value::<wire::CreateAccountRequest>(body).is_ok();
        let required =
            schemas["CreateAccountRequest"]["required"].as_array().is_some_and(|r| r.contains(&json!(field)));
        if !required {
            assert_eq!(parsed, schema["nullable"] == true, "{field}: null");
        }
    }
}
