# Rollback policy: rolling back restores the last known-good version, the safe direction, so the bundled
# policy never refuses it. An organisation may add deny rules in its own policies/ folder (same package).
#
# Input (built by the reliability agent): deployment_id, version, reason.
package pilotage.rollback

deny contains msg if {
	false
	msg := "unreachable: rollbacks are always allowed"
}
