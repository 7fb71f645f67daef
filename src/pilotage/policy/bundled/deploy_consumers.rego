# Deploy policy, issue 19: a breaking API change that live consumers still use waits for a person.
#
# Input (built by the deployment agent for a managed service, pilotage.fleet.impact.cross_service_impact):
#   cross_service: object, optional (absent for a service nobody can consume: a generated run's first delivery)
#     provider:  string   the service being deployed
#     consumers: [{service, env, operations: [{operation, operation_id, declared_as, changes: [{rule, detail}]}]}]
#                         the managed services whose production pilotage.yaml declares an operation a breaking
#                         change of this commit's OpenAPI document touches (oasdiff's rule ids)
#
# Why the deploy gate and not the merge gate: the harm happens when the new version takes the consumers' traffic,
# and "live" is the fleet's state at that moment (a consumer released meanwhile may have stopped using the
# operation); the merge gate sees the change before its tests, the deploy gate after them, so the person approving
# knows the change itself passed. A rollback never waits (safe direction).
#
# One approval message per affected consumer, naming it, the variable through which it calls the provider, and
# each operation with its changes: `pilotage approve ID` covers exactly those messages; `pilotage deny ID`, or
# no answer within the approval timeout (600 s), denies the deploy. An organisation that wants a plain deny
# writes `deny` rules on the same input in its own policies/ folder.
#
#   consumer_verification: object, optional (a managed provider with consumers; pilotage.fleet.verification)
#     summary:   string   "" when every consumer's own tests passed against the commit, else the one line naming
#                         each failed consumer (name@commit, variable) and its failing tests or its timeout
#     consumers: [contract.verified data]
#   A failed verification denies, quoting that line: a consumer whose tests fail against the new version is
#   broken by it, whatever the document says.
#
# Fail closed: a cross_service that is present but not an object with a consumers list, or a consumer entry that is
# not an object with a service name and a non-empty operations list, denies (the consumers cannot be checked).
package pilotage.deploy

needs_approval contains {"msg": msg, "rule": "breaking-change-consumed", "consumer": name} if {
	some consumer in _consumers
	_consumer_ok(consumer)
	name := consumer.service
	uses := [_use(op) | some op in consumer.operations]
	msg := concat("", [
		"breaking API change of ", _provider, " used by live consumer ", name,
		" (", _text(consumer, "env"), "): ", concat("; ", uses),
	])
}

deny contains msg if {
	is_string(input.consumer_verification.summary)
	input.consumer_verification.summary != ""
	msg := input.consumer_verification.summary
}

deny contains msg if {
	_cross_service_given
	not _cross_service_ok
	msg := "deploy input cross_service is not an object with a consumers list: the change's consumers cannot be checked"
}

deny contains msg if {
	some i, consumer in _consumers
	not _consumer_ok(consumer)
	msg := sprintf(
		"deploy input cross_service.consumers[%v] has no service name or no operations: its use cannot be checked",
		[i],
	)
}

_cross_service_given if {
	_ := input.cross_service
}

_cross_service_ok if {
	is_object(input.cross_service)
	is_array(input.cross_service.consumers)
}

_consumers := v if {
	_cross_service_ok
	v := input.cross_service.consumers
} else := []

_consumer_ok(consumer) if {
	is_object(consumer)
	is_string(consumer.service)
	is_array(consumer.operations)
	count(consumer.operations) > 0
}

_provider := v if {
	is_object(input.cross_service)
	v := input.cross_service.provider
	is_string(v)
} else := "(unknown provider)"

# "GET /payments/{id}: response 200 property 'amount' removed [response-required-property-removed]". Built with
# concat, not sprintf: regopy 1.5.2 quotes a string that another sprintf made when it formats it again.
_use(op) := concat("", [_text(op, "operation"), ": ", concat(", ", _details(op))])

_details(op) := [concat("", [_text(c, "detail"), " [", _text(c, "rule"), "]"]) | some c in _changes(op)]

_changes(op) := v if {
	is_object(op)
	v := op.changes
	is_array(v)
} else := []

# A string field, or a literal fallback inside the rule (regopy 1.5.2 quotes an object.get() default).
_text(obj, key) := v if {
	is_object(obj)
	v := obj[key]
	is_string(v)
} else := "?"
