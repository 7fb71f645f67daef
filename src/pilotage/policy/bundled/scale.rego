# Scale policy: may an environment be scaled?
#
# Input (built by the cost agent):
#   environment: string
#   direction:   "down" (to zero or fewer instances, the default) or "up"
#   idle_s:      seconds since the environment last received a request
#   min_idle_s:  seconds without requests required before a scale-down (settings.idle_after_s)
# Scaling up is always allowed; scaling down needs proof of idleness (fail closed when idle_s is missing).
#
# Each field is tested through a helper rule without arguments (`not _idle_known`): the same verdict in rego-cpp
# and OPA when it is missing, null or of another type (`not is_number(input.missing)` is true in rego-cpp and
# undefined in OPA). The idle times are compared only when both are numbers: the engines order values of
# different types differently (rego-cpp: "" < 7200; OPA: null < 7200).
package pilotage.scale

# Literal fallbacks inside the rules: regopy 1.5.2 quotes an object.get() default formatted by sprintf.
_direction := v if {
	v := input.direction
} else := "down"

_direction_text := v if {
	v := _direction
	is_string(v)
} else := "(not a string)"

_environment := v if {
	v := input.environment
	is_string(v)
} else := "(unknown environment)"

_scaling_down if _direction == "down"

_direction_known if _direction in {"down", "up"}

_idle_known if is_number(input.idle_s)

_window_known if is_number(input.min_idle_s)

deny contains msg if {
	_scaling_down
	not _idle_known
	msg := sprintf("idle time of environment %s is unknown: no scale-down without it", [_environment])
}

deny contains msg if {
	_scaling_down
	not _window_known
	msg := sprintf("no idle window (min_idle_s) given for environment %s: no scale-down without it", [_environment])
}

deny contains msg if {
	_scaling_down
	_idle_known
	_window_known
	input.idle_s < input.min_idle_s
	msg := sprintf(
		"environment %s received requests %v s ago, within the idle window of %v s: no scale-down",
		[_environment, input.idle_s, input.min_idle_s],
	)
}

deny contains msg if {
	not _direction_known
	msg := sprintf("unknown scaling direction %s for environment %s: use \"down\" or \"up\"", [_direction_text, _environment])
}
