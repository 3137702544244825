"""Redis keys of the realtime hub. Every key of one stream carries the hash tag `{sid}`
so that a stream's keys share a Cluster slot and one Lua script may touch them all."""

from __future__ import annotations


def seq(sid: str) -> str:
    """Counter: the `seq` of the stream's last broadcast message."""
    return f"rt:{{{sid}}}:seq"


def history(sid: str) -> str:
    """Redis Stream of the last broadcast messages, entry id `<seq>-0`, field `m`."""
    return f"rt:{{{sid}}}:hist"


def channel(sid: str) -> str:
    """Pub/Sub channel the stream's broadcast messages go out on."""
    return f"rt:{{{sid}}}"


def stats(sid: str) -> str:
    """Hash of counters: viewers, peak_viewers, comments, likes (see stats.py)."""
    return f"rt:{{{sid}}}:stats"


def stock_gate(sid: str, sku: str) -> str:
    """Exists while a `stock` message interval for this sku runs."""
    return f"rt:{{{sid}}}:stockgate:{sku}"


def stock_dirty(sid: str, sku: str) -> str:
    """Set when stock changed inside an interval: a trailing message is owed."""
    return f"rt:{{{sid}}}:stockdirty:{sku}"


def mutes(sid: str) -> str:
    """Set of viewer ids the host muted."""
    return f"rt:{{{sid}}}:mutes"


def banned_words(sid: str) -> str:
    """Set of casefolded words a comment may not contain."""
    return f"rt:{{{sid}}}:banned"


def comment_rate(sid: str, viewer_id: str) -> str:
    """Comments of one viewer in the current rate-limit window."""
    return f"rt:{{{sid}}}:rl:{viewer_id}"


def likes_pending(sid: str) -> str:
    """Likes counted since the last `likes` message."""
    return f"rt:{{{sid}}}:likes"


def likes_gate(sid: str) -> str:
    """Exists while a `likes` message interval runs."""
    return f"rt:{{{sid}}}:likesgate"


def viewer_counts(sid: str) -> str:
    """Hash: process id -> "count:expires_ms", each process's share of the audience."""
    return f"rt:{{{sid}}}:vc"


def viewers_gate(sid: str) -> str:
    """Exists while a `viewers` message interval runs."""
    return f"rt:{{{sid}}}:vcgate"


def viewer_connections(sid: str, viewer_id: str) -> str:
    """Sorted set: a viewer's open sockets to the stream, connection id -> lease end (ms)."""
    return f"rt:{{{sid}}}:conns:{viewer_id}"


def comment_ids(sid: str) -> str:
    """Sorted set: ids of the newest comments (as many as the history keeps) -> seq."""
    return f"rt:{{{sid}}}:cids"


def deleted_comments(sid: str) -> str:
    """Hash: comment id -> seq of its `comment.deleted`; trimmed with `comment_ids`."""
    return f"rt:{{{sid}}}:cdel"
