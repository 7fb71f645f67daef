# Deploy policy, issue 18: schemathesis' contract violations block a release unless the operator chose warnings.
#
# Input (built by the deployment agent from the commit's dev.pilotage.tests.completed):
#   contract: object, optional (absent when no test run reported one: a run recorded before issue 18)
#     violations: number   (operation, check) pairs where a contract check failed
#     checks:     object   check name -> [operation]: positive_data_acceptance (a valid request was rejected),
#                          status_code_conformance (an undocumented status), content_type_conformance (an
#                          undocumented content type), ignored_auth (authentication not enforced)
#     gate:       string   settings.testing_contract_gate: "deny" (default) or "warn" (reported, not denied)
#
# One deny message per failed check, naming the operations (built with concat: regopy's sprintf quotes strings). Anything but gate "warn" denies (fail closed: a missing
# or misspelt gate is the default). A violations count that is not a number, with checks listed, denies too.
package pilotage.deploy

deny contains msg if {
	_contract_denies
	some check, operations in input.contract.checks
	ops := [op | some op in operations; is_string(op)]
	msg := concat("", [
		"contract violation ", check, " on ", concat(", ", ops),
		": the service does not do what its OpenAPI document says (or set testing_contract_gate = warn to report it only)",
	])
}

_contract_denies if {
	is_object(input.contract)
	not _contract_warns
	is_object(input.contract.checks)
	count(input.contract.checks) > 0
}

_contract_warns if input.contract.gate == "warn"
