//! The command line: argh definitions and one function per command. This is the only layer
//! that uses `anyhow`; errors print as one line and exit non-zero.

use crate::broker::{self, Config, Server};
use crate::client::admin;
use crate::client::config::Home;
use crate::client::enroll;
use crate::client::{Client, ClientOptions, Dest, Inbound, InboxMessage};
use crate::proto::admin::AdminRequest;
use crate::proto::{Id16, Priority, Role};
use crate::util::{now_ms, parse_duration, rfc3339};
use anyhow::{anyhow, bail, Context, Result};
use argh::FromArgs;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) mod connect;
pub(crate) use connect::connect;

/// claudemesh: many Claude Code sessions working as one team.
#[derive(FromArgs)]
pub struct Cli {
    #[argh(subcommand)]
    pub cmd: Cmd,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum Cmd {
    Serve(ServeCmd),
    Mesh(MeshCmd),
    Invite(InviteCmd),
    Join(JoinCmd),
    Whoami(WhoamiCmd),
    Tools(ToolsCmd),
    Peers(crate::cap::peers::cli::PeersCmd),
    Send(SendCmd),
    Inbox(InboxCmd),
    Group(crate::cap::peers::cli::GroupCmd),
    State(crate::cap::state::cli::StateCmd),
    Task(crate::cap::tasks::cli::TaskCmd),
    Lease(crate::cap::leases::cli::LeaseCmd),
    Schedule(crate::cap::schedules::cli::ScheduleCmd),
    Context(crate::cap::context::cli::ContextCmd),
    Clock(crate::cap::clock::cli::ClockCmd),
    Stream(crate::cap::streams::cli::StreamCmd),
    Info(crate::cap::mesh::cli::InfoCmd),
    Status(StatusCmd),
    Doctor(DoctorCmd),
    Service(ServiceCmd),
    Member(MemberCmd),
    Mcp(McpCmd),
    Hook(HookCmd),
    Install(InstallCmd),
    Uninstall(UninstallCmd),
    Launch(LaunchCmd),
}

/// run Claude Code as a mesh peer (args after `--` go to claude)
#[derive(FromArgs)]
#[argh(subcommand, name = "launch")]
pub struct LaunchCmd {
    /// join a mesh with this invite first
    #[argh(option)]
    pub join: Option<String>,
    /// this session's peer name (and your member name with --join)
    #[argh(option)]
    pub name: Option<String>,
    /// default role for --groups entries without one
    #[argh(option)]
    pub role: Option<String>,
    /// groups to join, e.g. eng,web:lead
    #[argh(option, default = "String::new()")]
    pub groups: String,
    /// mesh name (when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// resume this Claude Code session (keeps the same peer identity and queue)
    #[argh(option, short = 'r')]
    pub resume: Option<String>,
    /// continue the most recent conversation in this directory
    #[argh(switch, short = 'c')]
    pub r#continue: bool,
    /// push (default; enables Claude Code's channel), inbox or off
    #[argh(option, default = "\"push\".into()")]
    pub message_mode: String,
    /// offer only these MCP tool groups, e.g. msg,peers (default: all)
    #[argh(option)]
    pub tools: Option<String>,
    /// run claude with --dangerously-skip-permissions
    #[argh(switch, short = 'y')]
    pub yes: bool,
    /// arguments passed to claude
    #[argh(positional, greedy)]
    pub claude_args: Vec<String>,
}

/// Claude Code hook (reads the hook JSON on stdin): working, idle or post-tool
#[derive(FromArgs)]
#[argh(subcommand, name = "hook")]
pub struct HookCmd {
    /// working (UserPromptSubmit), idle (Stop) or post-tool (PostToolUse)
    #[argh(positional)]
    pub kind: crate::claude::hook::HookKind,
}

/// register the MCP server with an agent: Claude Code (MCP entry + hooks), or --client codex/gemini/opencode
#[derive(FromArgs)]
#[argh(subcommand, name = "install")]
pub struct InstallCmd {
    /// the agent to connect: claude (default: MCP entry + hooks), codex, gemini or opencode
    #[argh(option, default = "String::from(\"claude\")")]
    pub client: String,
    /// claude: also warn before an Edit/Write of a file another peer has leased (PreToolUse)
    #[argh(switch)]
    pub lease_hook: bool,
}

/// remove what `install` added to an agent's config (--client as for install)
#[derive(FromArgs)]
#[argh(subcommand, name = "uninstall")]
pub struct UninstallCmd {
    /// the agent to disconnect: claude (default), codex, gemini or opencode
    #[argh(option, default = "String::from(\"claude\")")]
    pub client: String,
}

/// run the stdio MCP server for an agent session (the agent starts this)
#[derive(FromArgs)]
#[argh(subcommand, name = "mcp")]
pub struct McpCmd {
    /// push (channel notifications), inbox (check_messages; default) or off; also
    /// CLAUDEMESH_MESSAGE_MODE
    #[argh(option)]
    pub message_mode: Option<crate::mcp::MessageMode>,
    /// this session's peer name (default: CLAUDEMESH_NAME, else <member>-<session prefix>)
    #[argh(option)]
    pub name: Option<String>,
    /// offer only these tool groups, e.g. msg,peers (default: CLAUDEMESH_TOOLS, else all)
    #[argh(option)]
    pub tools: Option<String>,
}

/// operator actions on members (on the broker host, via its admin socket)
#[derive(FromArgs)]
#[argh(subcommand, name = "member")]
pub struct MemberCmd {
    #[argh(subcommand)]
    pub cmd: MemberSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum MemberSub {
    Remove(MemberRemoveCmd),
}

/// remove a member: its sessions are disconnected and it cannot reconnect or rejoin
#[derive(FromArgs)]
#[argh(subcommand, name = "remove")]
pub struct MemberRemoveCmd {
    /// mesh name
    #[argh(positional)]
    pub mesh: String,
    /// member name
    #[argh(positional)]
    pub name: String,
    /// the broker's data directory
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
}

/// run the broker (HTTP + WebSocket on one port, embedded storage)
#[derive(FromArgs)]
#[argh(subcommand, name = "serve")]
pub struct ServeCmd {
    /// address to listen on (default 127.0.0.1:7900)
    #[argh(option, default = "\"127.0.0.1:7900\".into()")]
    pub listen: String,
    /// data directory (default: /var/lib/claudemesh as root, else ~/.local/share/claudemesh)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
    /// base URL clients use to reach this broker, put in invites (default http://LISTEN)
    #[argh(option)]
    pub public_url: Option<String>,
    /// how long undelivered messages are kept (default 7d)
    #[argh(option, default = "\"7d\".into()")]
    pub retention: String,
    /// per-message size limit in bytes (default 65536)
    #[argh(option, default = "65536")]
    pub max_message_bytes: usize,
    /// frames per second allowed per peer (default 2000; burst is twice this)
    #[argh(option, default = "2000.0")]
    pub rate_limit: f64,
    /// log as JSON lines instead of human-readable text
    #[argh(switch)]
    pub log_json: bool,
}

/// create and list meshes (on the broker host, via its admin socket)
#[derive(FromArgs)]
#[argh(subcommand, name = "mesh")]
pub struct MeshCmd {
    #[argh(subcommand)]
    pub cmd: MeshSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum MeshSub {
    Create(MeshCreateCmd),
    List(MeshListCmd),
}

/// create a mesh and print an invite link
#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
pub struct MeshCreateCmd {
    /// mesh name
    #[argh(positional)]
    pub name: String,
    /// the broker's data directory (to find its admin socket)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
    /// role granted by the first invite (member or admin)
    #[argh(option, default = "Role::Member")]
    pub role: Role,
    /// first invite's lifetime (default 7d)
    #[argh(option, default = "\"7d\".into()")]
    pub expires: String,
    /// first invite's use limit (default unlimited)
    #[argh(option)]
    pub uses: Option<u32>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// list the broker's meshes
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
pub struct MeshListCmd {
    /// the broker's data directory
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// make another invite link for a mesh you created
#[derive(FromArgs)]
#[argh(subcommand, name = "invite")]
pub struct InviteCmd {
    /// mesh name
    #[argh(positional)]
    pub mesh: String,
    /// role to grant: member or admin (default member)
    #[argh(option, default = "Role::Member")]
    pub role: Role,
    /// lifetime, e.g. 30m, 12h, 7d (default 7d)
    #[argh(option, default = "\"7d\".into()")]
    pub expires: String,
    /// how many joins it allows (default unlimited)
    #[argh(option)]
    pub uses: Option<u32>,
    /// the broker's data directory
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// join a mesh with an invite link
#[derive(FromArgs)]
#[argh(subcommand, name = "join")]
pub struct JoinCmd {
    /// the invite link (claudemesh://join/...)
    #[argh(positional)]
    pub invite: String,
    /// your name in the mesh (default: $USER)
    #[argh(option)]
    pub name: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// show your identity in each joined mesh
#[derive(FromArgs)]
#[argh(subcommand, name = "whoami")]
pub struct WhoamiCmd {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// show or choose the MCP tool groups sessions offer for a mesh: GROUPS like msg,peers, or
/// all (each tool's schema costs every session context; `--tools` on mcp/launch overrides)
#[derive(FromArgs)]
#[argh(subcommand, name = "tools")]
pub struct ToolsCmd {
    /// tool groups to offer, or `all`; omitted: show the current choice
    #[argh(positional)]
    pub groups: Option<String>,
    /// mesh name (when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// send a message: TARGET is a name, a peer key, @group, * or a comma-separated list
#[derive(FromArgs)]
#[argh(subcommand, name = "send")]
pub struct SendCmd {
    /// recipient(s)
    #[argh(positional)]
    pub target: String,
    /// message text
    #[argh(positional)]
    pub text: String,
    /// now, next (default) or low
    #[argh(option, default = "Priority::Next")]
    pub priority: Priority,
    /// message id this replies to
    #[argh(option)]
    pub reply_to: Option<String>,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// print and acknowledge waiting messages
#[derive(FromArgs)]
#[argh(subcommand, name = "inbox")]
pub struct InboxCmd {
    /// wait up to this many seconds for a message when none is waiting
    #[argh(option, default = "0")]
    pub wait: u64,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON (an array of messages)
    #[argh(switch)]
    pub json: bool,
}

/// joined meshes, broker reachability and round-trip time, peers online, unread count
#[derive(FromArgs)]
#[argh(subcommand, name = "status")]
pub struct StatusCmd {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// run the broker as a systemd service on this host (install or uninstall)
#[derive(FromArgs)]
#[argh(subcommand, name = "service")]
pub struct ServiceCmd {
    #[argh(subcommand)]
    pub cmd: ServiceSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum ServiceSub {
    Install(ServiceInstallCmd),
    Uninstall(ServiceUninstallCmd),
}

/// write a hardened systemd unit for the broker, enable and start it
#[derive(FromArgs)]
#[argh(subcommand, name = "install")]
pub struct ServiceInstallCmd {
    /// base URL clients use to reach the broker (put in invites), e.g. https://mesh.example.com
    #[argh(option)]
    pub public_url: Option<String>,
    /// address to listen on (default 0.0.0.0:7900; 127.0.0.1:7900 with an https public URL,
    /// which means a TLS proxy on this host)
    #[argh(option)]
    pub listen: Option<String>,
    /// data directory under /var/lib (default /var/lib/claudemesh)
    #[argh(option, default = "crate::service::DEFAULT_DATA_DIR.into()")]
    pub data_dir: PathBuf,
    /// binary the unit runs (default: this one; copied to /usr/local/bin when it lives in a
    /// home directory or /tmp, which the service cannot see)
    #[argh(option)]
    pub exe: Option<PathBuf>,
    /// where to write the unit (default /etc/systemd/system)
    #[argh(option, default = "\"/etc/systemd/system\".into()")]
    pub unit_dir: PathBuf,
    /// write the unit but do not run systemctl
    #[argh(switch)]
    pub no_start: bool,
    /// print the unit and the steps; change nothing
    #[argh(switch)]
    pub dry_run: bool,
}

/// stop, disable and remove the broker's systemd unit (the data directory is kept)
#[derive(FromArgs)]
#[argh(subcommand, name = "uninstall")]
pub struct ServiceUninstallCmd {
    /// where the unit is (default /etc/systemd/system)
    #[argh(option, default = "\"/etc/systemd/system\".into()")]
    pub unit_dir: PathBuf,
    /// print the steps; change nothing
    #[argh(switch)]
    pub dry_run: bool,
}

/// check this machine's setup (Claude Code, its config, keys, brokers) and say how to fix
/// what fails
#[derive(FromArgs)]
#[argh(subcommand, name = "doctor")]
pub struct DoctorCmd {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Set up logging: human-readable on stderr, JSON lines when asked.
pub fn init_logging(json: bool, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLAUDEMESH_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json || std::env::var("CLAUDEMESH_LOG_FORMAT").is_ok_and(|v| v == "json") {
        let _ = b.json().try_init();
    } else {
        let _ = b.try_init();
    }
}

pub async fn run(cli: Cli) -> Result<()> {
    let home = Home::from_env();
    match cli.cmd {
        Cmd::Serve(c) => serve(c).await,
        Cmd::Mesh(MeshCmd {
            cmd: MeshSub::Create(c),
        }) => mesh_create(&home, c).await,
        Cmd::Mesh(MeshCmd {
            cmd: MeshSub::List(c),
        }) => mesh_list(c).await,
        Cmd::Invite(c) => invite_cmd(&home, c).await,
        Cmd::Join(c) => join(&home, c).await,
        Cmd::Whoami(c) => whoami(&home, c),
        Cmd::Tools(c) => tools(&home, c),
        Cmd::Peers(c) => crate::cap::peers::cli::peers(&home, c).await,
        Cmd::Send(c) => send(&home, c).await,
        Cmd::Inbox(c) => inbox(&home, c).await,
        Cmd::Group(c) => crate::cap::peers::cli::group(&home, c).await,
        Cmd::State(c) => crate::cap::state::cli::run(&home, c).await,
        Cmd::Task(c) => crate::cap::tasks::cli::run(&home, c).await,
        Cmd::Lease(c) => crate::cap::leases::cli::run(&home, c).await,
        Cmd::Schedule(c) => crate::cap::schedules::cli::run(&home, c).await,
        Cmd::Context(c) => crate::cap::context::cli::run(&home, c).await,
        Cmd::Clock(c) => crate::cap::clock::cli::run(&home, c).await,
        Cmd::Stream(c) => crate::cap::streams::cli::run(&home, c).await,
        Cmd::Info(c) => crate::cap::mesh::cli::run(&home, c).await,
        Cmd::Status(c) => status(&home, c).await,
        Cmd::Doctor(c) => {
            let checks =
                crate::claude::doctor::run(&home, &crate::claude::install::ClaudePaths::from_env())
                    .await;
            if c.json {
                println!("{}", serde_json::to_string(&checks)?);
            } else {
                print!("{}", crate::claude::doctor::render(&checks));
            }
            if checks.iter().any(|c| !c.ok) {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Service(c) => service(c).await,
        Cmd::Mcp(c) => mcp(&home, c).await,
        Cmd::Hook(c) => {
            use std::io::Read;
            let mut input = String::new();
            let _ = std::io::stdin().take(1 << 20).read_to_string(&mut input);
            if let Some(out) = crate::claude::hook::run(&home, c.kind, &input).await {
                println!("{out}");
            }
            Ok(())
        }
        Cmd::Launch(c) => launch(&home, c).await,
        Cmd::Install(c) if c.client != "claude" => {
            let agent: crate::agents::Agent = c.client.parse().map_err(|e: String| anyhow!(e))?;
            let exe = std::env::current_exe().context("cannot find this binary's path")?;
            let r = crate::agents::install(agent, &exe)?;
            println!(
                "installed: MCP server '{}' in {}",
                crate::agents::SERVER,
                agent.config_path().display()
            );
            for b in r.backups {
                println!("backup: {}", b.display());
            }
            Ok(())
        }
        Cmd::Install(c) => {
            let exe = std::env::current_exe().context("cannot find this binary's path")?;
            let paths = crate::claude::install::ClaudePaths::from_env();
            let r = crate::claude::install::install(&paths, &exe, c.lease_hook)?;
            println!(
                "installed: MCP server 'claudemesh' in {} and hooks in {}",
                paths.claude_json.display(),
                paths.settings.display()
            );
            for b in r.backups {
                println!("backup: {}", b.display());
            }
            Ok(())
        }
        Cmd::Uninstall(c) if c.client != "claude" => {
            let agent: crate::agents::Agent = c.client.parse().map_err(|e: String| anyhow!(e))?;
            let r = crate::agents::uninstall(agent)?;
            println!(
                "uninstalled claudemesh from {}'s config ({})",
                agent.name(),
                agent.config_path().display()
            );
            for b in r.backups {
                println!("backup: {}", b.display());
            }
            Ok(())
        }
        Cmd::Uninstall(_) => {
            let paths = crate::claude::install::ClaudePaths::from_env();
            let r = crate::claude::install::uninstall(&paths)?;
            println!("uninstalled claudemesh from Claude Code's config");
            for b in r.backups {
                println!("backup: {}", b.display());
            }
            Ok(())
        }
        Cmd::Member(MemberCmd {
            cmd: MemberSub::Remove(c),
        }) => {
            let v = admin::call(
                &data_dir(c.data_dir),
                &AdminRequest::MemberRemove {
                    mesh: c.mesh.clone(),
                    name: c.name.clone(),
                },
            )
            .await?;
            println!(
                "removed {} from mesh '{}' ({} connection(s) closed)",
                c.name, c.mesh, v["disconnected"]
            );
            Ok(())
        }
    }
}

// ------------------------------------------------------------------ broker side

async fn service(c: ServiceCmd) -> Result<()> {
    use crate::service::{self as svc, UnitOptions};
    match c.cmd {
        ServiceSub::Install(c) => {
            let listen = c
                .listen
                .clone()
                .unwrap_or_else(|| svc::default_listen(c.public_url.as_deref()).to_string());
            let mut o = UnitOptions {
                exe: PathBuf::new(),
                listen,
                public_url: c.public_url.clone(),
                data_dir: c.data_dir.clone(),
            };
            let current = std::env::current_exe().context("cannot find this binary's path")?;
            let steps = svc::plan(&mut o, &current, c.exe.clone(), &c.unit_dir, !c.no_start)?;
            if svc::hidden_from_service(&o.exe) {
                eprintln!(
                    "warning: {} is in a home or temporary directory, which the service cannot see (ProtectHome/PrivateTmp); it will fail to start unless you move it (e.g. to /usr/local/bin)",
                    o.exe.display()
                );
            }
            if c.dry_run {
                println!(
                    "# {}\n{}",
                    c.unit_dir.join(svc::UNIT_NAME).display(),
                    svc::unit(&o)
                );
                println!("dry run: would");
                for s in &steps {
                    println!("  {s}");
                }
                return Ok(());
            }
            let (runs, files): (Vec<svc::Step>, Vec<svc::Step>) = steps
                .into_iter()
                .partition(|s| matches!(s, svc::Step::Run(_)));
            svc::apply(&files, &o)?;
            let unit_file = c.unit_dir.join(svc::UNIT_NAME);
            match svc::verify(&unit_file) {
                Some(Ok(())) => println!("✓ systemd-analyze verify {}", unit_file.display()),
                Some(Err(e)) => println!("! systemd-analyze verify {}:\n{e}", unit_file.display()),
                None => {}
            }
            svc::apply(&runs, &o)?;
            if c.no_start {
                println!("wrote {}; start it with `systemctl daemon-reload && systemctl enable --now {}`", unit_file.display(), svc::UNIT_NAME);
                return Ok(());
            }
            let local = o.listen.replace("0.0.0.0", "127.0.0.1");
            let url = format!("http://{local}");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let ok = crate::client::http::request(&url, "GET", "/health", None)
                    .await
                    .is_ok_and(|(code, _)| code == 200);
                if ok {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    bail!("the service did not answer on {url}/health within 10 s: see `journalctl -u claudemesh`");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            println!("✓ claudemesh broker running ({url}/health answers)");
            println!("next: claudemesh mesh create <name>   (prints the invite for your team)");
            Ok(())
        }
        ServiceSub::Uninstall(c) => {
            if c.dry_run {
                let steps = svc::uninstall_plan(&c.unit_dir);
                println!("dry run: would");
                for s in &steps {
                    println!("  {s}");
                }
                return Ok(());
            }
            svc::uninstall(&c.unit_dir)?;
            println!("removed the claudemesh service (data in /var/lib is kept)");
            Ok(())
        }
    }
}

async fn serve(c: ServeCmd) -> Result<()> {
    init_logging(c.log_json, "info");
    let listen = c
        .listen
        .parse()
        .with_context(|| format!("invalid --listen address '{}'", c.listen))?;
    let mut cfg = Config::new(listen, c.data_dir.unwrap_or_else(broker::default_data_dir));
    cfg.public_url = c
        .public_url
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string();
    cfg.retention = parse_duration(&c.retention)
        .ok_or_else(|| anyhow!("invalid --retention '{}'", c.retention))?;
    cfg.max_message_bytes = c.max_message_bytes;
    cfg.max_frame_bytes = cfg.max_frame_bytes.max(c.max_message_bytes * 2 + 64 * 1024);
    if c.rate_limit.is_nan() || c.rate_limit <= 0.0 {
        bail!("--rate-limit must be positive");
    }
    cfg.rate_per_s = c.rate_limit;
    cfg.rate_burst = c.rate_limit * 2.0;
    let server = Server::start(cfg).await?;
    shutdown_signal().await;
    tracing::info!("signal received");
    server.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn data_dir(d: Option<PathBuf>) -> PathBuf {
    d.unwrap_or_else(broker::default_data_dir)
}

fn expiry_ms(s: &str) -> Result<u64> {
    let d = parse_duration(s)
        .ok_or_else(|| anyhow!("invalid --expires '{s}' (use e.g. 30m, 12h, 7d)"))?;
    Ok(now_ms().saturating_add(d.as_millis() as u64))
}

fn print_invite(
    link: &str,
    mesh: &str,
    role: Role,
    expires_ms: u64,
    uses: Option<u32>,
    json: bool,
) {
    if json {
        println!(
            "{}",
            serde_json::json!({ "invite": link, "mesh": mesh, "role": role, "expires": rfc3339(expires_ms), "uses": uses })
        );
    } else {
        let uses = uses.map(|u| format!(", {u} use(s)")).unwrap_or_default();
        println!(
            "invite for mesh '{mesh}' (role {}, expires {}{uses}):",
            role.as_str(),
            rfc3339(expires_ms)
        );
        println!("{link}");
        println!("join with: claudemesh join '{link}' --name <your-name>");
    }
}

async fn mesh_create(home: &Home, c: MeshCreateCmd) -> Result<()> {
    let dir = data_dir(c.data_dir);
    let om = enroll::create_mesh(home, &dir, &c.name).await?;
    let exp = expiry_ms(&c.expires)?;
    let link = enroll::make_invite(&dir, &om, c.role, exp, c.uses).await?;
    if !c.json {
        println!(
            "created mesh '{}' (owner keys in {})",
            c.name,
            home.owned_path().display()
        );
    }
    print_invite(&link, &c.name, c.role, exp, c.uses, c.json);
    Ok(())
}

async fn mesh_list(c: MeshListCmd) -> Result<()> {
    let v = admin::call(&data_dir(c.data_dir), &AdminRequest::MeshList).await?;
    if c.json {
        println!("{v}");
        return Ok(());
    }
    let list: Vec<broker::hub::MeshSummary> = serde_json::from_value(v)?;
    if list.is_empty() {
        println!("no meshes yet: create one with `claudemesh mesh create NAME`");
    }
    for m in list {
        println!(
            "{:<20} members {:<4} peers {:<4} online {:<4} created {}",
            m.name, m.members, m.peers, m.peers_online, m.created
        );
    }
    Ok(())
}

async fn invite_cmd(home: &Home, c: InviteCmd) -> Result<()> {
    let dir = data_dir(c.data_dir);
    let om = enroll::owned_mesh(home, &c.mesh)?;
    let exp = expiry_ms(&c.expires)?;
    let link = enroll::make_invite(&dir, &om, c.role, exp, c.uses).await?;
    print_invite(&link, &c.mesh, c.role, exp, c.uses, c.json);
    Ok(())
}

async fn launch(home: &Home, c: LaunchCmd) -> Result<()> {
    use crate::claude::launch;
    let _: crate::mcp::MessageMode = c.message_mode.parse().map_err(|e: String| anyhow!(e))?;
    if let Some(t) = &c.tools {
        crate::mcp::parse_tool_groups(t).map_err(|e| anyhow!(e))?;
    }
    if let Some(inv) = &c.join {
        let name = c.name.clone().unwrap_or_else(default_name);
        let (mc, reply) = enroll::join(home, inv, &name).await?;
        eprintln!(
            "joined mesh '{}' as {} ({})",
            reply.mesh_name, reply.name, mc.broker
        );
    }
    if home.load()?.meshes.is_empty() {
        bail!("not joined to any mesh yet: use --join <invite> or `claudemesh join`");
    }
    if let Some(m) = &c.mesh {
        // The session serves every joined mesh; --mesh only checks the name.
        home.select(Some(m))?;
    }
    if let Some(r) = &c.resume {
        if !crate::claude::session::valid_session_id(r) {
            bail!("invalid session id '{r}'");
        }
    }
    let session_id = match (&c.resume, c.r#continue) {
        (Some(id), _) => id.clone(),
        (None, true) => crate::claude::session::newest_transcript(
            &std::env::var_os("CLAUDE_CONFIG_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".claude")
                }),
            &std::env::current_dir().unwrap_or_default(),
        )
        .unwrap_or_else(crate::claude::session::generate),
        (None, false) => crate::claude::session::generate(),
    };
    let exe = std::env::current_exe().context("cannot find this binary's path")?;
    let plan = launch::LaunchPlan {
        resume: c.resume,
        continue_last: c.r#continue,
        name: c.name,
        groups: c.groups,
        role: c.role,
        message_mode: c.message_mode,
        skip_permissions: c.yes,
        claude_args: c.claude_args,
        tools: c.tools,
    };
    let p = launch::prepare(&plan, &exe, session_id);
    let mut cmd = std::process::Command::new(&p.program);
    cmd.args(&p.args).envs(p.env.iter().map(|(k, v)| (k, v)));
    let status = cmd.status().with_context(|| {
        format!(
            "cannot run {} (set CLAUDEMESH_CLAUDE_BIN or put claude on PATH)",
            p.program.display()
        )
    })?;
    std::process::exit(status.code().unwrap_or(1));
}

async fn mcp(home: &Home, c: McpCmd) -> Result<()> {
    let mode = match c.message_mode {
        Some(m) => m,
        None => match std::env::var("CLAUDEMESH_MESSAGE_MODE") {
            Ok(v) if !v.is_empty() => v.parse().map_err(|e: String| anyhow!(e))?,
            _ => crate::mcp::MessageMode::Inbox,
        },
    };
    let name = c.name.or_else(|| {
        std::env::var("CLAUDEMESH_NAME")
            .ok()
            .filter(|n| !n.is_empty())
    });
    if let Some(n) = &name {
        if !crate::util::valid_name(n) {
            bail!("invalid name '{n}': use 1-64 of A-Z a-z 0-9 . _ -");
        }
    }
    // Who this session is depends on the client, known at `initialize` (claude::session).
    let groups = crate::claude::launch::parse_groups(
        &std::env::var("CLAUDEMESH_GROUPS").unwrap_or_default(),
    );
    let tools = match c.tools.or_else(|| std::env::var("CLAUDEMESH_TOOLS").ok()) {
        Some(t) if !t.trim().is_empty() => {
            Some(crate::mcp::parse_tool_groups(&t).map_err(|e| anyhow!(e))?)
        }
        _ => None,
    };
    let server = crate::mcp::build(
        home,
        crate::mcp::Options {
            mode,
            name,
            groups,
            tools,
        },
    )?;
    crate::mcp::serve_stdio(server).await?;
    Ok(())
}

// ------------------------------------------------------------------ member side

fn default_name() -> String {
    let n = std::env::var("USER").unwrap_or_default();
    let n: String = n
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(64)
        .collect();
    if crate::util::valid_name(&n) {
        n
    } else {
        "member".into()
    }
}

async fn join(home: &Home, c: JoinCmd) -> Result<()> {
    let name = c.name.unwrap_or_else(default_name);
    let (mc, reply) = enroll::join(home, &c.invite, &name).await?;
    if c.json {
        println!(
            "{}",
            serde_json::json!({ "mesh": reply.mesh_name, "name": reply.name, "role": reply.role, "already_member": reply.already_member, "broker": mc.broker })
        );
    } else if reply.already_member {
        println!(
            "already a member of '{}' as {} ({})",
            reply.mesh_name,
            reply.name,
            reply.role.as_str()
        );
    } else {
        println!(
            "joined mesh '{}' as {} ({}) via {}",
            reply.mesh_name,
            reply.name,
            reply.role.as_str(),
            mc.broker
        );
    }
    Ok(())
}

fn tools(home: &Home, c: ToolsCmd) -> Result<()> {
    let mut cfg = home.load()?;
    let show = |m: &crate::client::config::MeshConfig| match &m.tools {
        Some(t) => t.join(","),
        None => "all".to_string(),
    };
    let Some(groups) = c.groups else {
        let shown: Vec<&crate::client::config::MeshConfig> = match &c.mesh {
            Some(_) => {
                let id = home.select(c.mesh.as_deref())?.mesh_id;
                cfg.meshes.iter().filter(|m| m.mesh_id == id).collect()
            }
            None => cfg.meshes.iter().collect(),
        };
        if c.json {
            let rows: Vec<_> = shown
                .iter()
                .map(|m| serde_json::json!({"mesh": m.mesh_name, "tools": m.tools}))
                .collect();
            println!("{}", serde_json::Value::Array(rows));
        } else {
            for m in shown {
                println!("{}: {}", m.mesh_name, show(m));
            }
            println!("groups: {}", crate::cap::TOOL_GROUPS.join(", "));
        }
        return Ok(());
    };
    let chosen = match groups.trim() {
        "all" => None,
        g => {
            let groups = crate::mcp::parse_tool_groups(g).map_err(|e| anyhow!(e))?;
            if groups.is_empty() {
                bail!(
                    "name at least one tool group ({}), or `all`",
                    crate::cap::TOOL_GROUPS.join(", ")
                );
            }
            Some(groups)
        }
    };
    let id = home.select(c.mesh.as_deref())?.mesh_id;
    let Some(m) = cfg.meshes.iter_mut().find(|m| m.mesh_id == id) else {
        bail!("the mesh left the config while it was being changed; try again");
    };
    m.tools = chosen;
    let (name, now) = (m.mesh_name.clone(), show(m));
    let tools = m.tools.clone();
    home.save(&cfg)?;
    if c.json {
        println!("{}", serde_json::json!({"mesh": name, "tools": tools}));
    } else {
        println!("mesh '{name}': tool groups {now} (new sessions pick this up)");
    }
    Ok(())
}

fn whoami(home: &Home, c: WhoamiCmd) -> Result<()> {
    let cfg = home.load()?;
    let rows: Vec<serde_json::Value> = cfg
        .meshes
        .iter()
        .map(|m| {
            serde_json::json!({
                "mesh": m.mesh_name, "mesh_id": m.mesh_id.hex(), "name": m.name, "role": m.role,
                "broker": m.broker, "member_key": m.member().public().hex(), "peer_key": m.peer("cli").public().hex(),
                "joined": rfc3339(m.joined_ms),
            })
        })
        .collect();
    if c.json {
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    if rows.is_empty() {
        bail!("not joined to any mesh yet: run `claudemesh join <invite>`");
    }
    for m in &cfg.meshes {
        println!(
            "{} in mesh '{}' ({}) via {}  member {}  peer {}",
            m.name,
            m.mesh_name,
            m.role.as_str(),
            m.broker,
            m.member().public().short(),
            m.peer("cli").public().short()
        );
    }
    Ok(())
}

/// Connect as the member's default peer (its CLI identity).
async fn send(home: &Home, c: SendCmd) -> Result<()> {
    let dests = Dest::parse_list(&c.target);
    if dests.is_empty() {
        bail!("no target given");
    }
    let reply_to = match &c.reply_to {
        Some(r) => Some(
            Id16::parse_hex(r)
                .ok_or_else(|| anyhow!("--reply-to must be a 32-hex-digit message id"))?,
        ),
        None => None,
    };
    let client = connect(home, c.mesh.as_deref(), false).await?;
    let r = client.send(&dests, &c.text, c.priority, reply_to).await?;
    if c.json {
        println!(
            "{}",
            serde_json::json!({ "id": r.msg_id.hex(), "recipients": r.recipients, "duplicate": r.duplicate })
        );
    } else {
        println!("sent {} to {} recipient(s)", r.msg_id.hex(), r.recipients);
    }
    Ok(())
}

fn print_messages(msgs: &[InboxMessage], json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(msgs).unwrap_or_else(|_| "[]".into())
        );
        return;
    }
    if msgs.is_empty() {
        println!("no messages");
    }
    for m in msgs {
        let reply = m
            .reply_to
            .as_ref()
            .map(|r| format!(" (reply to {})", &r[..8.min(r.len())]))
            .unwrap_or_default();
        println!(
            "[{}] {} → {} ({}){}: {}",
            m.sent_at,
            m.from,
            m.to,
            m.priority.as_str(),
            reply,
            m.text
        );
        println!("    id {}", m.id);
    }
}

async fn inbox(home: &Home, c: InboxCmd) -> Result<()> {
    let client = connect(home, c.mesh.as_deref(), true).await?;
    let mut msgs = client.pull().await?;
    for x in client.drain().await {
        if let Inbound::Message(m) = x {
            msgs.push(m);
        }
    }
    if msgs.is_empty() && c.wait > 0 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(c.wait);
        while msgs.is_empty() {
            match tokio::time::timeout_at(deadline, client.recv()).await {
                Ok(Some(Inbound::Message(m))) => msgs.push(m),
                Ok(Some(Inbound::Event(_) | Inbound::Feed(_))) => continue,
                Ok(None) | Err(_) => break,
            }
        }
        // Anything else that arrived with it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for x in client.drain().await {
            if let Inbound::Message(m) = x {
                msgs.push(m);
            }
        }
    }
    msgs.sort_by_key(|m| m.sent_at_ms);
    print_messages(&msgs, c.json);
    let ids: Vec<Id16> = msgs.iter().map(|m| m.msg_id).collect();
    client.ack(&ids);
    // Frames are handled in order: once the ping answers, the broker has the acks.
    client.ping().await.context("acknowledging messages")?;
    Ok(())
}

/// A JSON value for humans: `?` when it is missing.
fn shown(v: &serde_json::Value) -> String {
    if v.is_null() {
        "?".into()
    } else {
        v.to_string()
    }
}

async fn status(home: &Home, c: StatusCmd) -> Result<()> {
    let cfg = home.load()?;
    let mut rows = Vec::new();
    for m in &cfg.meshes {
        let t = std::time::Instant::now();
        let health = crate::client::http::request(&m.broker, "GET", "/health", None).await;
        let http_ms = t.elapsed().as_secs_f64() * 1000.0;
        let mut row = serde_json::json!({ "mesh": m.mesh_name, "name": m.name, "broker": m.broker, "reachable": health.is_ok() });
        if let Ok((200, body)) = &health {
            row["broker_version"] = serde_json::from_slice::<serde_json::Value>(body)
                .map(|v| v["version"].clone())
                .unwrap_or_default();
            row["http_rtt_ms"] = serde_json::json!((http_ms * 10.0).round() / 10.0);
        }
        let opts = ClientOptions::one_shot(home, m, "cli", &m.name);
        match Client::connect(opts, Duration::from_secs(5)).await {
            Ok(client) => {
                if let Ok(rtt) = client.ping().await {
                    row["rtt_ms"] = serde_json::json!((rtt.as_secs_f64() * 10000.0).round() / 10.0);
                }
                if let Ok(p) = client.list_peers().await {
                    row["peers_online"] = serde_json::json!(p.iter().filter(|p| p.online).count());
                    row["peers"] = serde_json::json!(p.len());
                }
                if let Ok((now, next, low)) = client.unread().await {
                    row["unread"] = serde_json::json!(now + next + low);
                    row["unread_by_priority"] =
                        serde_json::json!({"now": now, "next": next, "low": low});
                }
                row["connected"] = serde_json::json!(true);
                client.close().await;
                // Claude Code sessions that ran on this machine: what waits for each.
                let mut sessions = Vec::new();
                for (sid, name) in home.sessions(&m.mesh_id, 10) {
                    let o = ClientOptions::one_shot(home, m, &sid, &name);
                    let Ok(sc) = Client::connect(o, Duration::from_secs(5)).await else {
                        continue;
                    };
                    if let Ok((now, next, low)) = sc.unread().await {
                        sessions.push(serde_json::json!({"session_id": sid, "name": name, "unread": now + next + low}));
                    }
                    sc.close().await;
                }
                row["sessions"] = serde_json::Value::Array(sessions);
            }
            Err(e) => {
                row["connected"] = serde_json::json!(false);
                row["error"] = serde_json::json!(e.to_string());
            }
        }
        rows.push(row);
    }
    if c.json {
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    if rows.is_empty() {
        println!("not joined to any mesh yet: run `claudemesh join <invite>`");
    }
    for r in rows {
        if r["connected"] == true {
            println!(
                "✓ {} as {} via {}: rtt {} ms, {}/{} peers online, {} unread",
                r["mesh"].as_str().unwrap_or_default(),
                r["name"].as_str().unwrap_or_default(),
                r["broker"].as_str().unwrap_or_default(),
                shown(&r["rtt_ms"]),
                shown(&r["peers_online"]),
                shown(&r["peers"]),
                shown(&r["unread"])
            );
            for x in r["sessions"].as_array().into_iter().flatten() {
                println!(
                    "    session {} ({}): {} unread",
                    x["name"].as_str().unwrap_or_default(),
                    x["session_id"].as_str().unwrap_or_default(),
                    x["unread"]
                );
            }
        } else {
            println!(
                "✗ {} via {}: {}",
                r["mesh"].as_str().unwrap_or_default(),
                r["broker"].as_str().unwrap_or_default(),
                r["error"].as_str().unwrap_or("unreachable")
            );
        }
    }
    Ok(())
}
