# Deploy policy, issue 18: schemathesis' contract breaks block a release unless the operator chose warnings; gaps
# of the document (an undocumented status HTTP itself forces) are reported and deny only when the operator asks.
#
# Input (built by the deployment agent from the commit's dev.pilotage.tests.completed):
#   contract: object, optional (absent when no test run reported one: a run recorded before issue 18)
#     violations: number   (operation, check) pairs where a contract check failed
#     checks:     object   check name -> [operation]: positive_data_acceptance (a valid request was rejected),
#                          status_code_conformance (an undocumented status HTTP does not force), content_type_conformance
#                          (an undocumented content type), ignored_auth (authentication not enforced)
#     gate:       string   settings.testing_contract_gate: "deny" (default) or "warn" (reported, not denied)
#     gaps:       array    [{operation, status, reason, fix}]: document gaps, an undocumented status HTTP forces for
#                          the request (404 for an unknown id, 400 for an invalid body, 401 without credentials ...;
#                          pilotage.testing.forced_status); optional (absent in runs recorded before them)
#     gap_gate:   string   settings.testing_document_gap_gate: "report" (default: gaps never deny) or "deny"
#
# One deny message per failed check, naming the operations (built with concat: regopy's sprintf quotes strings). Anything
# but gate "warn" denies (fail closed: a missing or misspelt gate is the default). A violations count that is not a
# number, with checks listed, denies too. Gaps deny only with gap_gate "deny": one message per gap, with its fix, and
# one more when gaps is not an array of {operation: string, status: number, fix: string} (fail closed).
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

deny contains msg if {
	input.contract.gap_gate == "deny"
	some gap in _readable_gaps
	msg := concat("", [
		"document gap on ", gap.operation, ": status ", format_int(gap.status, 10),
		" is not declared (testing_document_gap_gate = deny): ", gap.fix,
	])
}

deny contains "document gaps listed in a shape this policy cannot read (testing_document_gap_gate = deny)" if {
	input.contract.gap_gate == "deny"
	not _gaps_readable
}

_gaps_readable if {
	is_array(input.contract.gaps)
	count(_readable_gaps) == count(input.contract.gaps)
}

_readable_gaps := [gap |
	some gap in input.contract.gaps
	is_string(gap.operation)
	is_number(gap.status)
	is_string(gap.fix)
]

_contract_denies if {
	is_object(input.contract)
	not _contract_warns
	is_object(input.contract.checks)
	count(input.contract.checks) > 0
}

_contract_warns if input.contract.gate == "warn"
