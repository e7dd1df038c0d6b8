"""Task families built on frozen agents: an env whose action is a command that a trained
policy (a skill) carries out. Above ``agent`` (a skill is a loaded agent), below ``training``
and ``evaluation``, which make these envs by their registered ids like any other."""
