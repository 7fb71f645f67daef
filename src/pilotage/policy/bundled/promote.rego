# Promote policy: may a canary take all the traffic?
#
# Input (built by the deployment agent from the last dev.pilotage.slo.evaluated):
#   deployment_id: string
#   healthy: bool      the canary met the SLO at the last analysis step
package pilotage.promote

deny contains msg if {
	not input.healthy == true
	msg := sprintf(
		"canary of deployment %s is not healthy: no promotion of a version that misses its SLO",
		[_subject],
	)
}

# A literal fallback inside the rule: regopy 1.5.2 quotes an object.get() default formatted by sprintf.
_subject := v if {
	v := input.deployment_id
	is_string(v)
} else := "(unknown deployment)"
