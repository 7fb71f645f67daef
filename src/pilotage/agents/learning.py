"""The learning agent: a Beta posterior of the rollout failure rate per service × strategy.

Step 9 of the lifecycle (DESIGN.md section 2). Each finished rollout is a Bernoulli trial: a
``dev.pilotage.deploy.rolled_back`` is a failure, a ``dev.pilotage.deploy.promoted`` a success. The success
probability ``p`` of a (service, strategy) pair gets the conjugate prior ``Beta(1, 1)`` (uniform: no opinion
before the first rollout) and after ``f`` failures and ``s`` successes the posterior is
``Beta(alpha = 1 + s, beta = 1 + f)`` — Beta(success, failure) as issue #2 names it — so the failure rate has
posterior mean ``1 - E[p] = beta / (alpha + beta)``: the conjugate Beta-Bernoulli update used in
Bayesian A/B testing (Gelman et al., *Bayesian Data Analysis*, 3rd ed., section 2.4). The deployment agent
reads it with :func:`failure_posterior` to weigh the next choice of strategy.

State lives in the graph (DESIGN.md section 6: nothing held in the agent): node kind ``Model``, key
``"{service}/{strategy}"``, props ``{service, strategy, alpha, beta, failure_mean, successes, failures,
deployment_ids}``. ``deployment_ids`` lists the deployments already counted, written in the same upsert as the
counts, so a redelivered event is not counted twice (at-least-once delivery). Each outcome is also linked
``Deployment:<id> -COUNTED_IN-> Model:<service>/<strategy>``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pilotage.agent import Agent, Reasoning
from pilotage.errors import InputError
from pilotage.events import CloudEvent, EventType
from pilotage.graph.base import Graph, node_id

__all__ = ["PRIOR", "LearningAgent", "beta_update", "failure_mean", "failure_posterior", "model_key"]

#: Prior Beta(alpha, beta) of a failure rate: uniform on [0, 1] (Bayes-Laplace prior).
PRIOR: tuple[float, float] = (1.0, 1.0)
#: The decision kind this agent records.
KIND = "learning.update"

_OUTCOMES = {EventType.DEPLOY_PROMOTED: "promoted", EventType.DEPLOY_ROLLED_BACK: "rolled_back"}


def model_key(service: str, strategy: str) -> str:
    """Return the key of the ``Model`` node of ``service`` × ``strategy``: ``"{service}/{strategy}"``."""
    return f"{service}/{strategy}"


def failure_mean(alpha: float, beta: float) -> float:
    """Posterior mean failure rate under ``Beta(alpha=successes+1, beta=failures+1)``: ``beta / (alpha + beta)``."""
    return beta / (alpha + beta)


def beta_update(alpha: float, beta: float, failed: bool) -> tuple[float, float]:
    """Conjugate Beta-Bernoulli update of Beta(success, failure): a success adds 1 to alpha, a failure 1 to beta."""
    return (alpha, beta + 1.0) if failed else (alpha + 1.0, beta)


def failure_posterior(graph: Graph, service: str, strategy: str) -> tuple[float, float]:
    """Return ``(alpha, beta)`` of the failure-rate posterior of ``service`` × ``strategy``.

    Args:
        graph: the knowledge graph the learning agent writes.
        service: service name (the events' subject).
        strategy: rollout strategy (``canary``, ``blue-green``, ``feature-flag`` ...).

    Returns:
        ``(alpha, beta)``; the prior :data:`PRIOR` ``(1.0, 1.0)`` when nothing was learned yet. The mean failure
        rate is ``beta / (alpha + beta)`` (:func:`failure_mean`).
    """
    node = graph.get_node(node_id("Model", model_key(service, strategy)))
    if node is None:
        return PRIOR
    try:
        return float(node.props["alpha"]), float(node.props["beta"])
    except (KeyError, TypeError, ValueError):
        return PRIOR


class LearningAgent(Agent):
    """Turns rollout outcomes into the failure-rate posterior of each service × strategy.

    Subscribes to ``dev.pilotage.deploy.promoted`` and ``dev.pilotage.deploy.rolled_back``; emits
    ``dev.pilotage.decision.made`` (kind ``learning.update``) and ``dev.pilotage.model.updated``
    ``{service, strategy, alpha, beta, failure_mean}``. A redelivered outcome leaves the model unchanged and
    emits ``model.updated`` again with the current values (consumers are idempotent).
    """

    name: ClassVar[str] = "learning"
    subscribes: ClassVar[tuple[str, ...]] = (EventType.DEPLOY_PROMOTED, EventType.DEPLOY_ROLLED_BACK)

    async def on_event(self, event: CloudEvent) -> None:
        """Count one rollout outcome (once per deployment), record the decision, publish the model.

        Raises:
            InputError: the event lacks ``deployment_id`` or ``strategy``, or has no subject (service).
        """
        outcome = _OUTCOMES.get(event.type)
        data = event.data if isinstance(event.data, dict) else {}
        deployment_id, strategy, service = data.get("deployment_id"), data.get("strategy"), event.subject
        if outcome is None or not deployment_id or not strategy or not service:
            raise InputError(
                f"{event.type} {event.id} lacks deployment_id, strategy or subject (service)",
                hint="emit deploy outcomes with data {deployment_id, strategy, version} and the service as subject",
            )
        graph = self.ctx.graph
        key = model_key(service, str(strategy))
        node = graph.get_node(node_id("Model", key))
        props = dict(node.props) if node is not None else {}
        counted = [str(item) for item in props.get("deployment_ids", [])]
        alpha, beta = failure_posterior(graph, service, str(strategy))
        inputs = {
            "service": service,
            "strategy": str(strategy),
            "deployment_id": str(deployment_id),
            "outcome": outcome,
            "prior": {"alpha": alpha, "beta": beta},
            "already_counted": str(deployment_id) in counted,
        }
        decision = await self.decide(KIND, inputs, cause=event)
        posterior = decision.score
        if not inputs["already_counted"]:
            failed = outcome == "rolled_back"
            model = graph.upsert_node(
                "Model",
                key,
                {
                    "service": service,
                    "strategy": str(strategy),
                    "alpha": posterior["alpha"],
                    "beta": posterior["beta"],
                    "failure_mean": posterior["failure_mean"],
                    "failures": int(props.get("failures", 0)) + int(failed),
                    "successes": int(props.get("successes", 0)) + int(not failed),
                    "deployment_ids": [*counted, str(deployment_id)],
                    "prior": list(PRIOR),
                },
            )
            deployment = graph.upsert_node("Deployment", str(deployment_id), {"outcome": outcome})
            graph.upsert_edge(deployment.id, "COUNTED_IN", model.id, {"outcome": outcome, "decision_id": decision.id})
        await self.emit(
            EventType.MODEL_UPDATED,
            {
                "service": service,
                "strategy": str(strategy),
                "alpha": posterior["alpha"],
                "beta": posterior["beta"],
                "failure_mean": posterior["failure_mean"],
            },
            cause=event,
        )

    def reason(self, kind: str, inputs: dict[str, Any]) -> Reasoning:
        """Apply the conjugate update to the prior in ``inputs`` (pure); a counted deployment changes nothing.

        Args:
            kind: ``learning.update``.
            inputs: ``{service, strategy, deployment_id, outcome: "promoted"|"rolled_back",
                prior: {alpha, beta}, already_counted: bool}``.

        Returns:
            Reasoning whose ``score`` is the posterior ``{alpha, beta, failure_mean}``.

        Raises:
            NotImplementedError: ``kind`` is not ``learning.update``.
        """
        if kind != KIND:
            return super().reason(kind, inputs)
        alpha, beta = float(inputs["prior"]["alpha"]), float(inputs["prior"]["beta"])
        failed = inputs["outcome"] == "rolled_back"
        pair = f"{inputs['service']} × {inputs['strategy']}"
        if inputs["already_counted"]:
            action = "ignore_duplicate"
            rationale = f"deployment {inputs['deployment_id']} was already counted for {pair}; the model is unchanged."
        else:
            before = failure_mean(alpha, beta)
            alpha, beta = beta_update(alpha, beta, failed)
            action = "count_failure" if failed else "count_success"
            rationale = (
                f"deployment {inputs['deployment_id']} was {inputs['outcome'].replace('_', ' ')}: "
                f"{'a failure' if failed else 'a success'} for {pair}; the failure-rate posterior moves to "
                f"Beta({alpha:g}, {beta:g}), mean {failure_mean(alpha, beta):.3f} (was {before:.3f})."
            )
        return Reasoning(
            action=action,
            rule="conjugate Beta-Bernoulli update of Beta(success, failure): success → alpha + 1, failure → beta + 1",
            score={"alpha": alpha, "beta": beta, "failure_mean": failure_mean(alpha, beta)},
            rationale=rationale,
        )
