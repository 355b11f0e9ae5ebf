"""The GraphQL transport: types, queries and mutations per feature, built in `schema`."""
