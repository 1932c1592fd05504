//! `cargo run --release --bin loadtest -- WORKLOAD [flags]`: the load harness.
//! Workloads: `ref`, `idle`, `durable`, `fanout`, `quick` (those four, small), `coord` (state,
//! tasks, streams) and `log` (the store's append-only log alone, no broker). The broker
//! runs as a separate process (this binary re-executed as `broker`, which is the same
//! library code as `claudemesh serve`). See docs/BENCHMARKS.md.

mod coordbench;
mod harness;
mod logbench;

use argh::FromArgs;
use harness::BrokerSpec;

/// claudemesh load harness
#[derive(FromArgs)]
struct Args {
    #[argh(subcommand)]
    cmd: Cmd,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Cmd {
    Ref(RefArgs),
    Idle(IdleArgs),
    Durable(DurableArgs),
    Fanout(FanoutArgs),
    Quick(QuickArgs),
    Log(LogArgs),
    Coord(CoordArgs),
    Broker(BrokerArgs),
}

/// the store's append-only log alone: appends/s with W appenders, reads from offsets
#[derive(FromArgs)]
#[argh(subcommand, name = "log")]
struct LogArgs {
    /// records to append (default 100000)
    #[argh(option, default = "100000")]
    appends: u64,
    /// concurrent appenders sharing the group commit (default 64)
    #[argh(option, default = "64")]
    writers: u64,
    /// payload bytes per record (default 200)
    #[argh(option, default = "200")]
    payload: usize,
}

/// coordination: state sets with 8 writers and watch latency, a claim race, stream publish and replay
#[derive(FromArgs)]
#[argh(subcommand, name = "coord")]
struct CoordArgs {
    /// state sets (default 100000)
    #[argh(option, default = "100000")]
    sets: u64,
    /// outstanding requests per writer/publisher (default 64)
    #[argh(option, default = "64")]
    window: usize,
    /// peers racing for tasks (default 100)
    #[argh(option, default = "100")]
    peers: usize,
    /// tasks to race for (default 1000)
    #[argh(option, default = "1000")]
    tasks: usize,
    /// stream messages to publish and replay (default 100000)
    #[argh(option, default = "100000")]
    msgs: u64,
}

/// N peers x M DMs to random peers, all at once
#[derive(FromArgs)]
#[argh(subcommand, name = "ref")]
struct RefArgs {
    /// peers (default 100)
    #[argh(option, default = "100")]
    peers: usize,
    /// DMs per peer (default 1000)
    #[argh(option, default = "1000")]
    msgs: u64,
    /// outstanding sends per peer (default 8; use --window 1000 for "fire everything")
    #[argh(option, default = "8")]
    window: usize,
    /// run the sweep 10/25/50/100 peers x 100 DMs instead
    #[argh(switch)]
    sweep: bool,
}

/// N connected peers idling, then 100 DMs
#[derive(FromArgs)]
#[argh(subcommand, name = "idle")]
struct IdleArgs {
    /// peers (default 10000)
    #[argh(option, default = "10000")]
    peers: usize,
    /// idle seconds (default 60)
    #[argh(option, default = "60")]
    secs: u64,
}

/// durable acked throughput with W outstanding sends per peer
#[derive(FromArgs)]
#[argh(subcommand, name = "durable")]
struct DurableArgs {
    /// peers (default 100)
    #[argh(option, default = "100")]
    peers: usize,
    /// comma-separated windows (default 1,8,64)
    #[argh(option, default = "\"1,8,64\".into()")]
    windows: String,
    /// seconds per window (default 10)
    #[argh(option, default = "10")]
    secs: u64,
}

/// one sender to a 1,000-peer group
#[derive(FromArgs)]
#[argh(subcommand, name = "fanout")]
struct FanoutArgs {
    /// recipients (default 1000)
    #[argh(option, default = "1000")]
    recipients: usize,
    /// seconds at 1 message/s (default 60)
    #[argh(option, default = "60")]
    secs: u64,
    /// seconds per step of the rising rate (default 3)
    #[argh(option, default = "3")]
    ramp_secs: u64,
}

/// all four workloads at small sizes (what `cargo bench` runs)
#[derive(FromArgs)]
#[argh(subcommand, name = "quick")]
struct QuickArgs {}

/// (internal) run a broker, like `claudemesh serve`
#[derive(FromArgs)]
#[argh(subcommand, name = "broker")]
struct BrokerArgs {
    /// listen address
    #[argh(option)]
    listen: String,
    /// data dir
    #[argh(option)]
    data_dir: std::path::PathBuf,
    /// rate limit
    #[argh(option, default = "2000.0")]
    rate_limit: f64,
}

fn main() {
    let args: Args = argh::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Cmd::Broker(b) = args.cmd {
        let cli = claudemesh::cli::Cli {
            cmd: claudemesh::cli::Cmd::Serve(claudemesh::cli::ServeCmd {
                listen: b.listen,
                data_dir: Some(b.data_dir),
                public_url: None,
                retention: "7d".into(),
                max_message_bytes: 65536,
                rate_limit: b.rate_limit,
                log_json: false,
            }),
        };
        if let Err(e) = rt.block_on(claudemesh::cli::run(cli)) {
            eprintln!("broker: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    harness::raise_nofile();
    let spec = BrokerSpec {
        program: std::env::current_exe().expect("current exe"),
        prefix: vec!["broker".into()],
    };
    println!("machine: {}", harness::machine());
    println!(
        "command: {}",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    let result = rt.block_on(async {
        match args.cmd {
            Cmd::Ref(a) if a.sweep => {
                let mut runs = Vec::new();
                for peers in [10, 25, 50, 100] {
                    runs.push(harness::run_ref(&spec, peers, 100, a.window).await);
                }
                serde_json::json!({ "workload": "ref-sweep", "runs": runs })
            }
            Cmd::Ref(a) => harness::run_ref(&spec, a.peers, a.msgs, a.window).await,
            Cmd::Idle(a) => harness::run_idle(&spec, a.peers, a.secs).await,
            Cmd::Durable(a) => {
                let w: Vec<usize> = a
                    .windows
                    .split(',')
                    .filter_map(|x| x.trim().parse().ok())
                    .collect();
                harness::run_durable(&spec, a.peers, &w, a.secs).await
            }
            Cmd::Fanout(a) => harness::run_fanout(&spec, a.recipients, a.secs, a.ramp_secs).await,
            Cmd::Quick(_) => harness::run_quick(&spec).await,
            Cmd::Log(a) => logbench::run(a.appends, a.writers, a.payload).await,
            Cmd::Coord(a) => {
                coordbench::run(&spec, a.sets, a.window, a.peers, a.tasks, a.msgs).await
            }
            Cmd::Broker(_) => unreachable!(),
        }
    });
    println!("{result}");
}
