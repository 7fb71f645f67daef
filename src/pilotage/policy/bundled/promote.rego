# Promote policy: may a canary take all the traffic?
#
# Input (built by the rollout agent from the last dev.pilotage.slo.evaluated):
#   deployment_id: string
#   healthy: bool      the canary met the SLO at the last analysis step
#
# Fields are tested through helper rules without arguments (`not _healthy`): the same verdict in rego-cpp and OPA
# when a field is missing, null or of another type (see commit.rego).
package pilotage.promote

deny contains msg if {
	not _healthy
	msg := sprintf(
		"canary of deployment %s is not healthy: no promotion of a version that misses its SLO",
		[_subject],
	)
}

_healthy if input.healthy == true

# A literal fallback inside the rule: regopy 1.5.2 quotes an object.get() default formatted by sprintf.
_subject := v if {
	v := input.deployment_id
	is_string(v)
} else := "(unknown deployment)"
