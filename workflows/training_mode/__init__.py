"""TrainingModeWorkflow, one per tenant: the workflow, what it takes and keeps, and the
training-lock activities it calls."""
