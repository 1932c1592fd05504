//! The fast check of the load harness: `ref` at 10 peers x 100 DMs against the real broker
//! binary must deliver everything exactly once (not a timing assertion).

use crate::harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ref_workload_10x100_delivers_everything_exactly_once() {
    let _machine = crate::shared();
    let spec = harness::BrokerSpec {
        program: env!("CARGO_BIN_EXE_claudemesh").into(),
        prefix: vec!["serve".into()],
    };
    let v = harness::run_ref(&spec, 10, 100, 8).await;
    assert_eq!(v["delivered_pct"], 100.0, "{v}");
    assert_eq!(v["duplicates"], 0, "{v}");
    assert_eq!(v["send_failures"], 0, "{v}");
}
