"""Model lifecycle tests: promotion, rollback, history, prediction, serving, safety."""
