//! The client side of `state`: typed calls on [`Client`].

use crate::client::{Client, ClientError};
use crate::proto::state::{Entry, Request as Q, Response as A};
use crate::proto::{Json, Response};

/// The answer to a write: applied at `version`, or the compare-and-set lost to `current`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Written {
    pub applied: bool,
    pub version: u64,
    pub current: Option<Entry>,
}

impl Client {
    pub async fn state_set(
        &self,
        key: &str,
        value: Json,
        if_version: Option<u64>,
        ttl_s: Option<u64>,
    ) -> Result<Written, ClientError> {
        let q = Q::Set {
            key: key.to_string(),
            value,
            if_version,
            ttl_s,
        };
        self.call(q, |r| match r {
            Response::State(A::Set {
                applied,
                version,
                current,
            }) => Ok(Written {
                applied,
                version,
                current,
            }),
            r => Err(r),
        })
        .await
    }

    pub async fn state_get(&self, key: &str) -> Result<Option<Entry>, ClientError> {
        let q = Q::Get {
            key: key.to_string(),
        };
        self.call(q, |r| match r {
            Response::State(A::Get { entry }) => Ok(entry),
            r => Err(r),
        })
        .await
    }

    /// Remove a key; `applied: false` when it did not exist or `if_version` did not match
    /// (`current` is then `None`; `version` is the current one).
    pub async fn state_delete(
        &self,
        key: &str,
        if_version: Option<u64>,
    ) -> Result<(bool, bool, u64), ClientError> {
        let q = Q::Delete {
            key: key.to_string(),
            if_version,
        };
        self.call(q, |r| match r {
            Response::State(A::Delete {
                applied,
                existed,
                version,
            }) => Ok((applied, existed, version)),
            r => Err(r),
        })
        .await
    }

    /// Keys starting with `prefix`, and whether there were more than one answer holds.
    pub async fn state_list(&self, prefix: &str) -> Result<(Vec<Entry>, bool), ClientError> {
        let q = Q::List {
            prefix: prefix.to_string(),
        };
        self.call(q, |r| match r {
            Response::State(A::List { entries, truncated }) => Ok((entries, truncated)),
            r => Err(r),
        })
        .await
    }

    /// Watch a key, or every key under a prefix (`key: None`), from `from_version` (`None`:
    /// from now on). Changes arrive as `Inbound::Feed` with a `Push::State` body, across
    /// reconnects without gaps. Returns the sub id and the first version that will come.
    pub async fn state_watch(
        &self,
        key: Option<&str>,
        prefix: Option<&str>,
        from_version: Option<u64>,
    ) -> Result<(u64, u64), ClientError> {
        let (key, prefix) = (key.map(str::to_string), prefix.map(str::to_string));
        let (sub, next) = self
            .subscribe(
                move |sub, from_version| {
                    Q::Watch {
                        sub,
                        key: key.clone(),
                        prefix: prefix.clone(),
                        from_version,
                    }
                    .into()
                },
                from_version,
                |r| match r {
                    Response::State(A::Watch { next_version, .. }) => {
                        Ok((next_version, next_version))
                    }
                    r => Err(r),
                },
            )
            .await?;
        Ok((sub, next))
    }

    /// Stop a watch; false when the broker had none of that id.
    pub async fn state_unwatch(&self, sub: u64) -> Result<bool, ClientError> {
        self.forget_subscription(sub);
        self.call(Q::Unwatch { sub }, |r| match r {
            Response::State(A::Unwatch { existed }) => Ok(existed),
            r => Err(r),
        })
        .await
    }
}

/// A change as a one-line event: the writer's member name is the event's peer; the value
/// is shown compact and cut at 300 bytes (it is peer input: attributed, never obeyed).
pub fn change_event(c: &crate::proto::state::Change) -> crate::proto::Event {
    let text = match &c.value {
        Some(v) => format!(
            "state \"{}\" set to {} by {} (version {})",
            c.key,
            crate::util::truncate(v.as_str(), 300),
            c.updated_by,
            c.version
        ),
        None if c.expired => format!("state \"{}\" expired (version {})", c.key, c.version),
        None => format!(
            "state \"{}\" deleted by {} (version {})",
            c.key, c.updated_by, c.version
        ),
    };
    crate::proto::Event {
        kind: "state_changed".into(),
        peer: c.updated_by.clone(),
        text,
        at_ms: c.at_ms,
    }
}
