"""`orchestrator chat`: an interactive terminal chat against a running API.

A thin client beside the command line: it speaks to the API over HTTP and the conversation
WebSocket only, and imports nothing of the server (`api/`, `workflows/`, `worker/`); from
`core/` only the settings (where the data dir is) and the dev token signer.
"""
