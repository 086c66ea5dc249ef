"""The names of every Redis key the product writes, so that each process (the API, the worker,
the tests) reads the keys the others write without importing their code.

Training mode (core/training_lock.py): a tenant's lease, its fence counter and its released
tokens, under a Redis Cluster hash tag (the braces) so that one script can touch them all;
and the set of tenants that ever held a lease, which the API's metrics read. Streamed turns
(activities/redis_stream.py): a turn's Redis Stream, and the pointer from a turn's number to it.
Sessions (activities/erasure.py): the ids of deleted ones, and a session's turns in flight.
Tenant policies (core/tenant_policy.py): a tenant's additions and their history.

Every key one script touches shares a Redis Cluster hash tag (the part in braces: a tenant,
or a session's workflow id), so that the script runs behind a cluster too.
"""

#: Every tenant that has held training mode: the API reports their state as a metric.
TENANTS_KEY = "orchestrator:training:tenants"


def lock_key(tenant: str) -> str:
    return f"orchestrator:training:{{{tenant}}}:lock"


def fence_key(tenant: str) -> str:
    return f"orchestrator:training:{{{tenant}}}:fence"


def released_key(tenant: str, token: str) -> str:
    return f"orchestrator:training:{{{tenant}}}:released:{token}"


def tenant_policy_key(tenant: str) -> str:
    """A tenant's current policy additions (core/tenant_policy.py)."""
    return f"orchestrator:policy:{{{tenant}}}:tenant"


def tenant_policy_history_key(tenant: str) -> str:
    """Every policy change the tenant made, oldest first."""
    return f"orchestrator:policy:{{{tenant}}}:history"


def turn_slots_key(tenant: str, session_id: str) -> str:
    """The turns of a session in flight (the API's limit on them)."""
    return f"limits:{{{tenant}}}:turns:{session_id}"


def deleted_sessions_key(tenant: str) -> str:
    """The ids of the tenant's deleted sessions: never started again, answered as missing."""
    return f"orchestrator:sessions:{{{tenant}}}:deleted"


def session_streams_pattern(workflow_id: str) -> str:
    """Every stream key of a session (its turns' Redis Streams and their pointers)."""
    return f"orchestrator:stream:{{{workflow_id}}}:*"


def stream_key(workflow_id: str, stream_id: str) -> str:
    return f"orchestrator:stream:{{{workflow_id}}}:{stream_id}"


def pointer_key(workflow_id: str, turn: int) -> str:
    return f"orchestrator:stream:{{{workflow_id}}}:turn:{turn}"
