//! The CLI verbs of `streams`: `claudemesh stream create|publish|read|list|subscribe`.

use super::client::{info_line, Limits};
use crate::cli::connect::connect;
use crate::client::{Home, Inbound};
use crate::proto::{Json, Push};
use anyhow::Result;
use argh::FromArgs;

/// the mesh's message streams
#[derive(FromArgs)]
#[argh(subcommand, name = "stream")]
pub struct StreamCmd {
    #[argh(subcommand)]
    pub cmd: StreamSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum StreamSub {
    Create(CreateCmd),
    Publish(PublishCmd),
    Read(ReadCmd),
    List(ListCmd),
    Subscribe(SubscribeCmd),
}

/// create a stream (or change its limits)
#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
pub struct CreateCmd {
    #[argh(positional)]
    pub name: String,
    /// keep at most this many messages
    #[argh(option)]
    pub max_msgs: Option<u64>,
    /// keep at most this many bytes
    #[argh(option)]
    pub max_bytes: Option<u64>,
    /// drop messages older than this many seconds
    #[argh(option)]
    pub max_age: Option<u64>,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// publish DATA (JSON; other text is sent as a string)
#[derive(FromArgs)]
#[argh(subcommand, name = "publish")]
pub struct PublishCmd {
    #[argh(positional)]
    pub stream: String,
    #[argh(positional)]
    pub data: String,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// read messages from a sequence on
#[derive(FromArgs)]
#[argh(subcommand, name = "read")]
pub struct ReadCmd {
    #[argh(positional)]
    pub stream: String,
    /// first sequence (default 1)
    #[argh(option, default = "1")]
    pub from: u64,
    /// at most this many (default 100)
    #[argh(option, default = "100")]
    pub limit: u32,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// list streams
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
pub struct ListCmd {
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// print a stream's messages as they come, until interrupted
#[derive(FromArgs)]
#[argh(subcommand, name = "subscribe")]
pub struct SubscribeCmd {
    #[argh(positional)]
    pub stream: String,
    /// start at this sequence
    #[argh(option)]
    pub from: Option<u64>,
    /// start with the last N messages
    #[argh(option)]
    pub last: Option<u64>,
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// one JSON object per message
    #[argh(switch)]
    pub json: bool,
}

/// Run `claudemesh stream ...`.
pub async fn run(home: &Home, c: StreamCmd) -> Result<()> {
    match c.cmd {
        StreamSub::Create(c) => {
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let l = Limits {
                max_msgs: c.max_msgs,
                max_bytes: c.max_bytes,
                max_age_s: c.max_age,
            };
            let s = client.stream_create(&c.name, l).await?;
            if c.json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                println!("{}", info_line(&s));
            }
        }
        StreamSub::Publish(c) => {
            let data = Json::parse(&c.data)
                .unwrap_or_else(|_| Json::from_value(&serde_json::Value::String(c.data.clone())));
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let seq = client.publish(&c.stream, data).await?;
            if c.json {
                println!("{}", serde_json::json!({ "seq": seq }));
            } else {
                println!("published (seq {seq})");
            }
        }
        StreamSub::Read(c) => {
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let (msgs, first, last) = client.read_stream(&c.stream, c.from, c.limit).await?;
            if c.json {
                println!(
                    "{}",
                    serde_json::json!({"messages": msgs, "first_seq": first, "last_seq": last})
                );
            } else {
                for m in &msgs {
                    println!("#{} {} {}", m.seq, m.by, m.data.as_str());
                }
            }
        }
        StreamSub::List(c) => {
            let client = connect(home, c.mesh.as_deref(), false).await?;
            let s = client.list_streams().await?;
            if c.json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                for x in &s {
                    println!("{}", info_line(x));
                }
            }
        }
        StreamSub::Subscribe(c) => {
            let client = connect(home, c.mesh.as_deref(), true).await?;
            let (_, next, _) = client.stream_subscribe(&c.stream, c.from, c.last).await?;
            if !c.json {
                eprintln!("subscribed from seq {next} (Ctrl-C stops)");
            }
            while let Some(x) = client.recv().await {
                let Inbound::Feed(f) = x else { continue };
                if let Push::Streams(m) = &f.body {
                    if c.json {
                        println!("{}", serde_json::to_string(m)?);
                    } else {
                        println!("#{} {} {}", m.seq, m.by, m.data.as_str());
                    }
                }
            }
        }
    }
    Ok(())
}
