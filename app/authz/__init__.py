"""Authorization: the Casbin policy (owned by `enforcer`) and the decisions made from it."""
