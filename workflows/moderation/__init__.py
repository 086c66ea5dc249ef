"""ModerationWorkflow: texts checked against the policy outside any conversation
(POST /v1/moderations)."""
