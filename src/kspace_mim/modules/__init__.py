"""LightningModules: one shared reconstruction base, one thin subclass per model family."""
