"""PolicyChangeWorkflow: a tenant's policy change, stored and audited (PUT /v1/policy)."""
