"""GraphQL object types, one module per record kind."""
