//! One example of every request and response kind, for the checks that must see them all:
//! the postcard byte snapshot (a shape change cannot ship without a new subprotocol name),
//! a docs/PROTOCOL.md section per request kind, and one reply per request of every kind.
//!
//! [`request_index`] and [`response_index`] match without wildcards: a new kind does not
//! compile until it gets an index here, and the tests check every index has an example.

use super::*;

/// Number of request kinds (and of response kinds: one each).
pub const KINDS: usize = 46;

/// A position for every request kind, 0..KINDS.
pub fn request_index(r: &Request) -> usize {
    use {
        clock::Request as W, conn::Request as C, context::Request as K, leases::Request as L,
        msg::Request as M, peers::Request as P, schedules::Request as D, state::Request as S,
        streams::Request as X, tasks::Request as T,
    };
    match r {
        Request::Conn(C::Ping {}) => 0,
        Request::Msg(M::Send { .. }) => 1,
        Request::Msg(M::Pull { .. }) => 2,
        Request::Msg(M::Unread {}) => 3,
        Request::Msg(M::MessageStatus { .. }) => 4,
        Request::Msg(M::SetStatus { .. }) => 5,
        Request::Peers(P::List {}) => 6,
        Request::Peers(P::Resolve { .. }) => 7,
        Request::Peers(P::SetSummary { .. }) => 8,
        Request::Peers(P::SetProfile { .. }) => 9,
        Request::Peers(P::SetVisible { .. }) => 10,
        Request::Peers(P::JoinGroup { .. }) => 11,
        Request::Peers(P::LeaveGroup { .. }) => 12,
        Request::Peers(P::ListGroups {}) => 13,
        Request::State(S::Set { .. }) => 14,
        Request::State(S::Get { .. }) => 15,
        Request::State(S::Delete { .. }) => 16,
        Request::State(S::List { .. }) => 17,
        Request::State(S::Watch { .. }) => 18,
        Request::State(S::Unwatch { .. }) => 19,
        Request::Tasks(T::Create { .. }) => 20,
        Request::Tasks(T::Claim { .. }) => 21,
        Request::Tasks(T::Unclaim { .. }) => 22,
        Request::Tasks(T::Complete { .. }) => 23,
        Request::Tasks(T::Get { .. }) => 24,
        Request::Tasks(T::List { .. }) => 25,
        Request::Tasks(T::Watch { .. }) => 26,
        Request::Leases(L::Reserve { .. }) => 27,
        Request::Leases(L::Release { .. }) => 28,
        Request::Leases(L::List { .. }) => 29,
        Request::Streams(X::Create { .. }) => 30,
        Request::Streams(X::Publish { .. }) => 31,
        Request::Streams(X::Subscribe { .. }) => 32,
        Request::Streams(X::Unsubscribe { .. }) => 33,
        Request::Streams(X::Read { .. }) => 34,
        Request::Streams(X::List {}) => 35,
        Request::Schedules(D::Create { .. }) => 36,
        Request::Schedules(D::List {}) => 37,
        Request::Schedules(D::Cancel { .. }) => 38,
        Request::Context(K::Share { .. }) => 39,
        Request::Context(K::Get { .. }) => 40,
        Request::Context(K::List { .. }) => 41,
        Request::Clock(W::Set { .. }) => 42,
        Request::Clock(W::Pause {}) => 43,
        Request::Clock(W::Resume {}) => 44,
        Request::Clock(W::Get {}) => 45,
    }
}

/// A position for every response kind: the same as its request's.
pub fn response_index(r: &Response) -> usize {
    use {
        clock::Response as W, conn::Response as C, context::Response as K, leases::Response as L,
        msg::Response as M, peers::Response as P, schedules::Response as D, state::Response as S,
        streams::Response as X, tasks::Response as T,
    };
    match r {
        Response::Conn(C::Ping { .. }) => 0,
        Response::Msg(M::Send { .. }) => 1,
        Response::Msg(M::Pull { .. }) => 2,
        Response::Msg(M::Unread { .. }) => 3,
        Response::Msg(M::MessageStatus { .. }) => 4,
        Response::Msg(M::SetStatus {}) => 5,
        Response::Peers(P::List { .. }) => 6,
        Response::Peers(P::Resolve { .. }) => 7,
        Response::Peers(P::SetSummary {}) => 8,
        Response::Peers(P::SetProfile {}) => 9,
        Response::Peers(P::SetVisible {}) => 10,
        Response::Peers(P::JoinGroup {}) => 11,
        Response::Peers(P::LeaveGroup {}) => 12,
        Response::Peers(P::ListGroups { .. }) => 13,
        Response::State(S::Set { .. }) => 14,
        Response::State(S::Get { .. }) => 15,
        Response::State(S::Delete { .. }) => 16,
        Response::State(S::List { .. }) => 17,
        Response::State(S::Watch { .. }) => 18,
        Response::State(S::Unwatch { .. }) => 19,
        Response::Tasks(T::Create { .. }) => 20,
        Response::Tasks(T::Claim { .. }) => 21,
        Response::Tasks(T::Unclaim { .. }) => 22,
        Response::Tasks(T::Complete { .. }) => 23,
        Response::Tasks(T::Get { .. }) => 24,
        Response::Tasks(T::List { .. }) => 25,
        Response::Tasks(T::Watch { .. }) => 26,
        Response::Leases(L::Reserve { .. }) => 27,
        Response::Leases(L::Release { .. }) => 28,
        Response::Leases(L::List { .. }) => 29,
        Response::Streams(X::Create { .. }) => 30,
        Response::Streams(X::Publish { .. }) => 31,
        Response::Streams(X::Subscribe { .. }) => 32,
        Response::Streams(X::Unsubscribe { .. }) => 33,
        Response::Streams(X::Read { .. }) => 34,
        Response::Streams(X::List { .. }) => 35,
        Response::Schedules(D::Create { .. }) => 36,
        Response::Schedules(D::List { .. }) => 37,
        Response::Schedules(D::Cancel { .. }) => 38,
        Response::Context(K::Share { .. }) => 39,
        Response::Context(K::Get { .. }) => 40,
        Response::Context(K::List { .. }) => 41,
        Response::Clock(W::Set { .. }) => 42,
        Response::Clock(W::Pause { .. }) => 43,
        Response::Clock(W::Resume { .. }) => 44,
        Response::Clock(W::Get { .. }) => 45,
    }
}

fn sealed() -> Sealed {
    Sealed {
        nonce: Blob(vec![4; 24].into()),
        ct: Blob(vec![5; 20].into()),
    }
}

fn profile() -> Profile {
    Profile {
        avatar: "🦀".into(),
        title: "reviewer".into(),
        bio: "reads diffs".into(),
        capabilities: vec!["rust".into()],
    }
}

/// A peer as the broker describes it.
pub fn peer_info() -> PeerInfo {
    PeerInfo {
        peer_pk: Key([1; 32]),
        peer_xpk: Key([2; 32]),
        member_pk: Key([3; 32]),
        name: "bob".into(),
        online: true,
        status: Status::Working,
        summary: "on the parser".into(),
        groups: vec![GroupRole {
            group: "eng/web".into(),
            role: "lead".into(),
        }],
        hostname: "box".into(),
        cwd: "/src".into(),
        connected_since_ms: 10,
        last_seen_ms: 11,
        profile: profile(),
        visible: true,
        member_name: "bob".into(),
        gets_member_messages: true,
        terminal: false,
    }
}

/// A delivery as pushed or pulled.
pub fn delivery() -> Delivery {
    Delivery {
        msg_id: Id16([7; 16]),
        from: Key([1; 32]),
        from_xpk: Key([2; 32]),
        from_name: "alice".into(),
        to: "@eng".into(),
        target: Target::Group("eng".into()),
        priority: Priority::Next,
        reply_to: Some(Id16([8; 16])),
        sealed: sealed(),
        sent_at_ms: 12,
        expires_at_ms: 13,
    }
}

fn json() -> Json {
    Json::parse(r#"{"stage":"canary","pct":5}"#).unwrap_or_default()
}

fn state_entry() -> state::Entry {
    state::Entry {
        key: "deploy/status".into(),
        value: json(),
        version: 4,
        updated_by: "alice".into(),
        updated_at_ms: 14,
        expires_at_ms: Some(15),
    }
}

fn stream_info() -> streams::StreamInfo {
    streams::StreamInfo {
        name: "build/events".into(),
        first_seq: 1,
        last_seq: 6,
        count: 6,
        bytes: 120,
        max_msgs: Some(10_000),
        max_bytes: None,
        max_age_s: Some(86_400),
    }
}

/// A stream message as read or pushed.
pub fn stream_message() -> streams::Message {
    streams::Message {
        stream: "build/events".into(),
        seq: 6,
        data: json(),
        by: "alice".into(),
        at_ms: 21,
    }
}

fn mesh_clock() -> clock::Clock {
    clock::Clock {
        speed: 10,
        paused: false,
        auto_paused: false,
        paused_by: None,
        tick: 3,
        mesh_time_ms: 1_800_000_180_000,
        started_at_ms: 1_800_000_000_000,
        set_by: "alice".into(),
        updated_at_ms: 26,
        next_tick_at_ms: Some(27),
    }
}

fn shared_context() -> context::Context {
    context::Context {
        id: Id16([12; 16]),
        peer: "bob-claude-1a2b".into(),
        peer_key: Key([1; 32]),
        member_name: "bob".into(),
        summary: "the parser recurses per nesting level".into(),
        files_read: vec!["src/parser.rs".into()],
        key_findings: vec!["groups nest at most 64 deep".into()],
        tags: vec!["parser".into()],
        version: 2,
        created_at_ms: 24,
        updated_at_ms: 25,
        online: true,
    }
}

fn schedule() -> schedules::Schedule {
    schedules::Schedule {
        id: Id16([11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 0, 0, 0, 0]),
        to: "@eng".into(),
        creator: "alice-claude-3c4d".into(),
        creator_key: Key([1; 32]),
        member_name: "alice".into(),
        priority: Priority::Next,
        cron: Some("0 9 * * 1-5".into()),
        tz: Some("Europe/Berlin".into()),
        mesh_clock: false,
        created_at_ms: 22,
        next_due_ms: 23,
        fired: 1,
        last_fired_ms: Some(21),
        last_late_ms: Some(0),
        own_copy: Some(sealed()),
    }
}

fn lease() -> leases::Lease {
    leases::Lease {
        id: Id16([10; 16]),
        paths: vec!["src/parser.rs".into()],
        exclusive: true,
        reason: "splitting the lexer".into(),
        holder: "bob-claude-1a2b".into(),
        holder_key: Key([1; 32]),
        member_name: "bob".into(),
        created_at_ms: 18,
        expires_at_ms: 19,
    }
}

fn task() -> tasks::Task {
    tasks::Task {
        id: Id16([8; 16]),
        title: "fix the parser".into(),
        body: "tests in tests/parse.rs".into(),
        status: tasks::TaskStatus::Claimed,
        priority: "high".into(),
        tags: vec!["rust".into()],
        depends_on: vec![Id16([9; 16])],
        created_by: "alice".into(),
        assignee: Some("bob-claude-1a2b".into()),
        claimed_by: Some("bob-claude-1a2b".into()),
        lease_until_ms: Some(20),
        result: String::new(),
        created_at_ms: 16,
        updated_at_ms: 17,
        history: vec![tasks::HistoryEntry {
            at_ms: 17,
            by: "bob-claude-1a2b".into(),
            action: "claimed".into(),
            note: "lease 600 s".into(),
        }],
    }
}

/// A state change as a watcher gets it.
pub fn feed() -> Feed {
    Feed {
        sub: 7,
        seq: 4,
        body: Push::State(state::Change {
            key: "deploy/status".into(),
            version: 4,
            value: Some(json()),
            deleted: false,
            updated_by: "alice".into(),
            at_ms: 14,
            expired: false,
        }),
    }
}

/// One request of every kind, in index order.
pub fn requests() -> Vec<Request> {
    use {
        clock::Request as W, conn::Request as C, context::Request as K, leases::Request as L,
        msg::Request as M, peers::Request as P, schedules::Request as D, state::Request as S,
        streams::Request as X, tasks::Request as T,
    };
    vec![
        Request::Conn(C::Ping {}),
        Request::Msg(M::Send {
            msg_id: Id16([7; 16]),
            priority: Priority::Now,
            reply_to: None,
            envelopes: vec![Envelope {
                to: Target::Peer(Key([1; 32])),
                sealed: sealed(),
            }],
        }),
        Request::Msg(M::Pull { limit: 10 }),
        Request::Msg(M::Unread {}),
        Request::Msg(M::MessageStatus {
            msg_id: Id16([7; 16]),
        }),
        Request::Msg(M::SetStatus {
            status: Status::Dnd,
        }),
        Request::Peers(P::List {}),
        Request::Peers(P::Resolve {
            names: vec!["bob".into(), "nobody".into()],
        }),
        Request::Peers(P::SetSummary {
            summary: "on the parser".into(),
        }),
        Request::Peers(P::SetProfile { profile: profile() }),
        Request::Peers(P::SetVisible { visible: false }),
        Request::Peers(P::JoinGroup {
            group: "eng/web".into(),
            role: "lead".into(),
        }),
        Request::Peers(P::LeaveGroup {
            group: "eng/web".into(),
        }),
        Request::Peers(P::ListGroups {}),
        Request::State(S::Set {
            key: "deploy/status".into(),
            value: json(),
            if_version: Some(3),
            ttl_s: Some(60),
        }),
        Request::State(S::Get {
            key: "deploy/status".into(),
        }),
        Request::State(S::Delete {
            key: "deploy/status".into(),
            if_version: None,
        }),
        Request::State(S::List {
            prefix: "deploy/".into(),
        }),
        Request::State(S::Watch {
            sub: 7,
            key: None,
            prefix: Some("deploy/".into()),
            from_version: Some(4),
        }),
        Request::State(S::Unwatch { sub: 7 }),
        Request::Tasks(T::Create {
            title: "fix the parser".into(),
            body: "tests in tests/parse.rs".into(),
            assignee: Some("bob".into()),
            priority: Some("high".into()),
            tags: vec!["rust".into()],
            depends_on: vec![Id16([9; 16])],
        }),
        Request::Tasks(T::Claim {
            id: Id16([8; 16]),
            lease_s: Some(600),
        }),
        Request::Tasks(T::Unclaim { id: Id16([8; 16]) }),
        Request::Tasks(T::Complete {
            id: Id16([8; 16]),
            result: "merged".into(),
        }),
        Request::Tasks(T::Get { id: Id16([8; 16]) }),
        Request::Tasks(T::List {
            status: Some(tasks::TaskStatus::Open),
            assignee: None,
            tag: Some("rust".into()),
        }),
        Request::Tasks(T::Watch {
            id: Id16([8; 16]),
            on: true,
        }),
        Request::Leases(L::Reserve {
            paths: vec!["src/parser.rs".into(), "src/lexer/**".into()],
            exclusive: Some(true),
            ttl_s: Some(1800),
            reason: "splitting the lexer".into(),
        }),
        Request::Leases(L::Release {
            paths: vec![],
            lease_id: Some(Id16([10; 16])),
        }),
        Request::Leases(L::List {
            path: Some("src/parser.rs".into()),
        }),
        Request::Streams(X::Create {
            name: "build/events".into(),
            max_msgs: Some(10_000),
            max_bytes: None,
            max_age_s: Some(86_400),
        }),
        Request::Streams(X::Publish {
            stream: "build/events".into(),
            data: json(),
        }),
        Request::Streams(X::Subscribe {
            sub: 8,
            stream: "build/events".into(),
            from_seq: Some(5),
            last: None,
        }),
        Request::Streams(X::Unsubscribe { sub: 8 }),
        Request::Streams(X::Read {
            stream: "build/events".into(),
            from_seq: 1,
            limit: 100,
        }),
        Request::Streams(X::List {}),
        Request::Schedules(D::Create {
            id: Id16([11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 0, 0, 0, 0]),
            to: "@eng".into(),
            envelopes: vec![Envelope {
                to: Target::Group("eng".into()),
                sealed: sealed(),
            }],
            own_copy: sealed(),
            priority: Priority::Next,
            deliver_at_ms: None,
            in_seconds: None,
            cron: Some("0 9 * * 1-5".into()),
            tz: Some("Europe/Berlin".into()),
            mesh_clock: false,
        }),
        Request::Schedules(D::List {}),
        Request::Schedules(D::Cancel { id: Id16([11; 16]) }),
        Request::Context(K::Share {
            summary: "the parser recurses per nesting level".into(),
            files_read: vec!["src/parser.rs".into()],
            key_findings: vec!["groups nest at most 64 deep".into()],
            tags: vec!["parser".into()],
        }),
        Request::Context(K::Get {
            query: "nested groups in the parser".into(),
            limit: Some(5),
        }),
        Request::Context(K::List { limit: Some(20) }),
        Request::Clock(W::Set {
            speed: 10,
            start_at_ms: Some(1_800_000_000_000),
        }),
        Request::Clock(W::Pause {}),
        Request::Clock(W::Resume {}),
        Request::Clock(W::Get {}),
    ]
}

/// One response of every kind, in index order.
pub fn responses() -> Vec<Response> {
    use {
        clock::Response as W, conn::Response as C, context::Response as K, leases::Response as L,
        msg::Response as M, peers::Response as P, schedules::Response as D, state::Response as S,
        streams::Response as X, tasks::Response as T,
    };
    vec![
        Response::Conn(C::Ping { server_time_ms: 99 }),
        Response::Msg(M::Send {
            msg_id: Id16([7; 16]),
            recipients: 2,
            duplicate: false,
        }),
        Response::Msg(M::Pull {
            messages: vec![delivery()],
        }),
        Response::Msg(M::Unread {
            now: 1,
            next: 2,
            low: 3,
        }),
        Response::Msg(M::MessageStatus {
            msg_id: Id16([7; 16]),
            recipients: vec![RecipientStatus {
                peer_pk: Key([1; 32]),
                name: "bob".into(),
                state: DeliveryState::Delivered,
            }],
            read_unnamed: 1,
        }),
        Response::Msg(M::SetStatus {}),
        Response::Peers(P::List {
            peers: vec![peer_info()],
        }),
        Response::Peers(P::Resolve {
            results: vec![
                peers::Resolved {
                    name: "bob".into(),
                    peer: Some(peer_info()),
                },
                peers::Resolved {
                    name: "nobody".into(),
                    peer: None,
                },
            ],
        }),
        Response::Peers(P::SetSummary {}),
        Response::Peers(P::SetProfile {}),
        Response::Peers(P::SetVisible {}),
        Response::Peers(P::JoinGroup {}),
        Response::Peers(P::LeaveGroup {}),
        Response::Peers(P::ListGroups {
            groups: vec![peers::GroupInfo {
                name: "eng/web".into(),
                members: vec![peers::GroupMember {
                    peer_name: "alice-claude-1a2b".into(),
                    member_name: "alice".into(),
                    role: "lead".into(),
                    online: true,
                }],
            }],
        }),
        Response::State(S::Set {
            applied: false,
            version: 4,
            current: Some(state_entry()),
        }),
        Response::State(S::Get {
            entry: Some(state_entry()),
        }),
        Response::State(S::Delete {
            applied: true,
            existed: true,
            version: 5,
        }),
        Response::State(S::List {
            entries: vec![state_entry()],
            truncated: false,
        }),
        Response::State(S::Watch {
            sub: 7,
            next_version: 4,
        }),
        Response::State(S::Unwatch { existed: true }),
        Response::Tasks(T::Create {
            task: Box::new(task()),
        }),
        Response::Tasks(T::Claim {
            claimed: false,
            task: Box::new(task()),
            blocked_by: vec![Id16([9; 16])],
        }),
        Response::Tasks(T::Unclaim {
            task: Box::new(task()),
        }),
        Response::Tasks(T::Complete {
            task: Box::new(task()),
        }),
        Response::Tasks(T::Get {
            task: Box::new(task()),
        }),
        Response::Tasks(T::List {
            tasks: vec![task()],
            truncated: false,
        }),
        Response::Tasks(T::Watch { watching: true }),
        Response::Leases(L::Reserve {
            granted: false,
            lease: None,
            conflicts: vec![lease()],
        }),
        Response::Leases(L::Release {
            released: vec![Id16([10; 16])],
        }),
        Response::Leases(L::List {
            leases: vec![lease()],
        }),
        Response::Streams(X::Create {
            stream: stream_info(),
        }),
        Response::Streams(X::Publish { seq: 6 }),
        Response::Streams(X::Subscribe {
            sub: 8,
            next_seq: 5,
            first_seq: 1,
        }),
        Response::Streams(X::Unsubscribe { existed: true }),
        Response::Streams(X::Read {
            messages: vec![stream_message()],
            first_seq: 1,
            last_seq: 6,
        }),
        Response::Streams(X::List {
            streams: vec![stream_info()],
        }),
        Response::Schedules(D::Create {
            schedule: Box::new(schedule()),
        }),
        Response::Schedules(D::List {
            schedules: vec![schedule()],
        }),
        Response::Schedules(D::Cancel { id: Id16([11; 16]) }),
        Response::Context(K::Share {
            context: Box::new(shared_context()),
        }),
        Response::Context(K::Get {
            hits: vec![context::Hit {
                context: shared_context(),
                score: 2.5,
                matched: vec!["tags".into(), "summary".into()],
            }],
        }),
        Response::Context(K::List {
            contexts: vec![shared_context()],
            total: 1,
        }),
        Response::Clock(W::Set {
            clock: mesh_clock(),
        }),
        Response::Clock(W::Pause {
            clock: clock::Clock {
                paused: true,
                paused_by: Some("alice".into()),
                next_tick_at_ms: None,
                ..mesh_clock()
            },
        }),
        Response::Clock(W::Resume {
            clock: mesh_clock(),
        }),
        Response::Clock(W::Get {
            clock: Some(mesh_clock()),
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_is_one_example_of_every_request_and_response_kind_in_index_order() {
        let q: Vec<usize> = requests().iter().map(request_index).collect();
        let a: Vec<usize> = responses().iter().map(response_index).collect();
        let all: Vec<usize> = (0..KINDS).collect();
        assert_eq!(q, all);
        assert_eq!(a, all);
    }

    #[test]
    fn each_response_has_the_kind_name_of_its_request() {
        for (q, a) in requests().iter().zip(responses()) {
            let a = serde_json::to_value(&a).unwrap();
            let (cap, inner) = a.as_object().unwrap().iter().next().unwrap();
            let kind = inner.as_object().unwrap().keys().next().unwrap();
            assert_eq!(q.kind(), format!("{cap}.{kind}"));
        }
    }
}
