# Rollback policy: rolling back restores the last known-good version, the safe direction, so the bundled
# policy never refuses it. Deny or needs_approval rules an organisation adds in its own policies/ folder (same
# package) are recorded in the verdict and the incident but do not stop a rollback, and neither does an engine
# error: Agent.authorize proceeds in the safe direction (see pilotage.policy.base, "Fail closed").
#
# Input (built by the reliability agent): deployment_id, version, reason.
package pilotage.rollback

deny contains msg if {
	false
	msg := "unreachable: rollbacks are always allowed"
}
