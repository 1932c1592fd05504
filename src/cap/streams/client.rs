//! The client side of `streams`: typed calls on [`Client`].

use crate::client::{Client, ClientError};
use crate::proto::streams::{Message, Request as Q, Response as A, StreamInfo};
use crate::proto::{Json, Response};

/// A stream's limits (`None`: no limit).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub max_msgs: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_age_s: Option<u64>,
}

impl Client {
    pub async fn stream_create(&self, name: &str, l: Limits) -> Result<StreamInfo, ClientError> {
        let q = Q::Create {
            name: name.to_string(),
            max_msgs: l.max_msgs,
            max_bytes: l.max_bytes,
            max_age_s: l.max_age_s,
        };
        self.call(q, |r| match r {
            Response::Streams(A::Create { stream }) => Ok(stream),
            r => Err(r),
        })
        .await
    }

    pub async fn publish(&self, stream: &str, data: Json) -> Result<u64, ClientError> {
        let q = Q::Publish {
            stream: stream.to_string(),
            data,
        };
        self.call(q, |r| match r {
            Response::Streams(A::Publish { seq }) => Ok(seq),
            r => Err(r),
        })
        .await
    }

    /// Subscribe from `from_seq`, or the `last` n, or from now. Messages arrive as
    /// `Inbound::Feed` with a `Push::Streams` body, across reconnects without gaps or
    /// repeats. Returns (sub id, first sequence that will come, oldest kept).
    pub async fn stream_subscribe(
        &self,
        stream: &str,
        from_seq: Option<u64>,
        last: Option<u64>,
    ) -> Result<(u64, u64, u64), ClientError> {
        let name = stream.to_string();
        // The first request asks as told; a renewal resumes at its sequence.
        let first_call = std::sync::atomic::AtomicBool::new(true);
        let (sub, (next, first)) = self
            .subscribe(
                move |sub, from| {
                    let (from_seq, last) =
                        if first_call.swap(false, std::sync::atomic::Ordering::SeqCst) {
                            (from, last)
                        } else {
                            (from, None)
                        };
                    Q::Subscribe {
                        sub,
                        stream: name.clone(),
                        from_seq,
                        last,
                    }
                    .into()
                },
                from_seq,
                |r| match r {
                    Response::Streams(A::Subscribe {
                        next_seq,
                        first_seq,
                        ..
                    }) => Ok(((next_seq, first_seq), next_seq)),
                    r => Err(r),
                },
            )
            .await?;
        Ok((sub, next, first))
    }

    pub async fn stream_unsubscribe(&self, sub: u64) -> Result<bool, ClientError> {
        self.forget_subscription(sub);
        self.call(Q::Unsubscribe { sub }, |r| match r {
            Response::Streams(A::Unsubscribe { existed }) => Ok(existed),
            r => Err(r),
        })
        .await
    }

    /// Up to `limit` messages from `from_seq`, and the stream's (first, last) sequence.
    pub async fn read_stream(
        &self,
        stream: &str,
        from_seq: u64,
        limit: u32,
    ) -> Result<(Vec<Message>, u64, u64), ClientError> {
        let q = Q::Read {
            stream: stream.to_string(),
            from_seq,
            limit,
        };
        self.call(q, |r| match r {
            Response::Streams(A::Read {
                messages,
                first_seq,
                last_seq,
            }) => Ok((messages, first_seq, last_seq)),
            r => Err(r),
        })
        .await
    }

    pub async fn list_streams(&self) -> Result<Vec<StreamInfo>, ClientError> {
        self.call(Q::List {}, |r| match r {
            Response::Streams(A::List { streams }) => Ok(streams),
            r => Err(r),
        })
        .await
    }
}

/// A stream message as a one-line event (peer input: attributed, cut at 300 bytes).
pub fn message_event(m: &Message) -> crate::proto::Event {
    crate::proto::Event {
        kind: "stream_message".into(),
        peer: m.by.clone(),
        text: format!(
            "stream \"{}\" #{} from {}: {}",
            m.stream,
            m.seq,
            m.by,
            crate::util::truncate(m.data.as_str(), 300)
        ),
        at_ms: m.at_ms,
    }
}

pub fn info_line(s: &StreamInfo) -> String {
    let lim = |v: Option<u64>, unit: &str| v.map(|x| format!(" max {x}{unit}")).unwrap_or_default();
    format!(
        "{}: {} message(s), seq {}..{}, {} bytes{}{}{}",
        s.name,
        s.count,
        s.first_seq,
        s.last_seq,
        s.bytes,
        lim(s.max_msgs, " msgs"),
        lim(s.max_bytes, " bytes"),
        lim(s.max_age_s, " s")
    )
}
