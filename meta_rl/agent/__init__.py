"""The agent's parts: context encoder, task model, belief-conditioned policy, MAML adaptation,
the shared network pieces, and :class:`~meta_rl.agent.meta_agent.MetaAgent` that puts them
together behind the ``AdaptiveAgent`` protocol (:mod:`meta_rl.trial`)."""
