"""The rules of the service, free of any transport: GraphQL, the CLI and tests call these."""
