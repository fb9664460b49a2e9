"""The ground floor: the one settings model, source configuration, process set-up.

Every package may import `config.sources`; only entry points and the composition root import
`config.settings`."""
