//! The sandbox's control endpoints, for tests and benchmarks in any
//! language: `GET|PUT /_sandbox/switches`, `GET /_sandbox/stats` and
//! `GET /_sandbox/arrivals`. Faults never apply to them.

use axum::{Json, Router, extract::State, routing::get};
use serde::Serialize;
use std::{collections::BTreeMap, sync::Arc};

use super::{
    arrivals::Arrival,
    switches::Switches,
    vendor::{Shared, Stats, lock},
};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sandbox/switches", get(get_switches).put(put_switches))
        .route("/_sandbox/stats", get(get_stats))
        .route("/_sandbox/arrivals", get(get_arrivals))
}

async fn get_switches(State(shared): State<Arc<Shared>>) -> Json<Switches> {
    Json(lock(&shared.switches).clone())
}

async fn put_switches(State(shared): State<Arc<Shared>>, Json(switches): Json<Switches>) -> Json<Switches> {
    *lock(&shared.switches) = switches.clone();
    Json(switches)
}

#[derive(Serialize)]
struct StatsBody {
    requests: Stats,
    accounts: usize,
}

async fn get_stats(State(shared): State<Arc<Shared>>) -> Json<StatsBody> {
    let requests = lock(&shared.stats).clone();
    let accounts = lock(&shared.state).account_count();
    Json(StatsBody { requests, accounts })
}

async fn get_arrivals(State(shared): State<Arc<Shared>>) -> Json<BTreeMap<String, Vec<Arrival>>> {
    Json(lock(&shared.arrivals).snapshot())
}
