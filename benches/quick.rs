//! `cargo bench`: the quick version of all four load workloads, against a broker process
//! (the real `claudemesh serve` binary).

#[path = "loadtest/harness.rs"]
mod harness;

fn main() {
    // `cargo bench -- --list` and friends: nothing to list.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    harness::raise_nofile();
    let spec = harness::BrokerSpec {
        program: env!("CARGO_BIN_EXE_claudemesh").into(),
        prefix: vec!["serve".into()],
    };
    println!("machine: {}", harness::machine());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let v = rt.block_on(harness::run_quick(&spec));
    println!("{v}");
}
