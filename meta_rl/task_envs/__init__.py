"""Task families seen from the toolkit: finding and importing a family, task-aware vector envs,
and the checker behind ``metarl check-env``."""
