# Deploy policy: may a commit be rolled out?
#
# Input (built by the deployment agent):
#   commit: string             the commit to deploy
#   tests_passed: bool         dev.pilotage.tests.completed "passed" for that commit
#   security_scan_passed: bool optional; when present and false the deploy is refused
#   security_scan: object      the dev.pilotage.security.scanned data of the commit (bandit, by the governance
#                              agent): {tool, status, issues {high, medium, low}}; required, status "completed"
#                              and a high-severity count of 0
#
# Each condition is a helper rule without arguments, denied with `not _rule`: defined-false in rego-cpp and in
# OPA alike when the field is missing, null or of another type. (`not is_object(input.missing)` is true in
# rego-cpp and undefined in OPA, which let a deploy without a security scan through an OPA server.) Numbers are
# compared only after is_number: the engines order values of different types differently.
package pilotage.deploy

deny contains msg if {
	not _tests_passed
	msg := sprintf(
		"tests failed for commit %s: no deploy of a change whose tests failed",
		[_subject],
	)
}

deny contains msg if {
	input.security_scan_passed == false
	msg := sprintf(
		"security scan failed for commit %s: no deploy without a passing security scan",
		[_subject],
	)
}

deny contains msg if {
	not _scan_recorded
	msg := sprintf(
		"no security scan recorded for commit %s: no deploy without a completed security scan (bandit)",
		[_subject],
	)
}

deny contains msg if {
	_scan_recorded
	not _scan_completed
	msg := sprintf(
		"security scan of commit %s did not complete (%s): no deploy without a completed security scan",
		[_subject, _scan_status],
	)
}

deny contains msg if {
	_scan_completed
	not _high_counted
	msg := sprintf(
		"security scan of commit %s gives no count of high-severity issues: no deploy without one",
		[_subject],
	)
}

deny contains msg if {
	_scan_completed
	_high_count > 0
	msg := sprintf(
		"security scan of commit %s found %v high-severity issue(s): no deploy until they are fixed",
		[_subject, _high_count],
	)
}

_tests_passed if input.tests_passed == true

_scan_recorded if is_object(input.security_scan)

_scan_completed if {
	_scan_recorded
	input.security_scan.status == "completed"
}

_high_count := n if {
	n := input.security_scan.issues.high
	is_number(n)
}

_high_counted if _high_count >= 0

_scan_status := v if {
	v := input.security_scan.status
	is_string(v)
} else := "no status"

# A literal fallback inside the rule: regopy 1.5.2 quotes an object.get() default formatted by sprintf.
_subject := v if {
	v := input.commit
	is_string(v)
} else := "(unknown commit)"
