"""ConversationWorkflow, one per session: the workflow, a turn's run, what they take and keep,
and the activities they call."""
