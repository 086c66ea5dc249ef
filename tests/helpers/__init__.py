"""What several test modules share: reading SSE and Kafka, driving turns directly, workflows
and activities made for a test, and the bearer header."""
