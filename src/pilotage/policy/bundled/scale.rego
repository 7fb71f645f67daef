# Scale policy: may an environment be scaled?
#
# Input (built by the cost agent):
#   environment: string
#   direction:   "down" (to zero or fewer instances, the default) or "up"
#   idle_s:      seconds since the environment last received a request
#   min_idle_s:  seconds without requests required before a scale-down (settings.idle_after_s)
# Scaling up is always allowed; scaling down needs proof of idleness (fail closed when idle_s is missing).
package pilotage.scale

# Literal fallbacks inside the rules: regopy 1.5.2 quotes an object.get() default formatted by sprintf.
_direction := v if {
	v := input.direction
} else := "down"

_environment := v if {
	v := input.environment
	is_string(v)
} else := "(unknown environment)"

deny contains msg if {
	_direction == "down"
	not is_number(input.idle_s)
	msg := sprintf("idle time of environment %s is unknown: no scale-down without it", [_environment])
}

deny contains msg if {
	_direction == "down"
	not is_number(input.min_idle_s)
	msg := sprintf("no idle window (min_idle_s) given for environment %s: no scale-down without it", [_environment])
}

deny contains msg if {
	_direction == "down"
	input.idle_s < input.min_idle_s
	msg := sprintf(
		"environment %s received requests %v s ago, within the idle window of %v s: no scale-down",
		[_environment, input.idle_s, input.min_idle_s],
	)
}

deny contains msg if {
	not _direction in {"down", "up"}
	msg := sprintf("unknown scaling direction %v for environment %s: use \"down\" or \"up\"", [_direction, _environment])
}
