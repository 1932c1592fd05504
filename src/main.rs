//! `claudemesh`: the broker, the client CLI and (later) the stdio MCP server, in one binary.

fn main() -> std::process::ExitCode {
    let cli: claudemesh::cli::Cli = argh::from_env();
    if !matches!(cli.cmd, claudemesh::cli::Cmd::Serve(_)) {
        claudemesh::cli::init_logging(false, "warn");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(claudemesh::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            std::process::ExitCode::FAILURE
        }
    }
}
