# Deploy policy: may a commit be rolled out?
#
# Input (built by the deployment agent):
#   commit: string             the commit to deploy
#   tests_passed: bool         dev.pilotage.tests.completed "passed" for that commit
#   security_scan_passed: bool optional; when present and false the deploy is refused
#   security_scan: object      the dev.pilotage.security.scanned data of the commit (bandit, by the governance
#                              agent): {tool, status, issues {high, medium, low}}; required, status "completed"
#                              and no high-severity issue
package pilotage.deploy

deny contains msg if {
	not input.tests_passed == true
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
	not is_object(input.security_scan)
	msg := sprintf(
		"no security scan recorded for commit %s: no deploy without a completed security scan (bandit)",
		[_subject],
	)
}

deny contains msg if {
	is_object(input.security_scan)
	not input.security_scan.status == "completed"
	msg := sprintf(
		"security scan of commit %s did not complete (%v): no deploy without a completed security scan",
		[_subject, _scan_status],
	)
}

deny contains msg if {
	input.security_scan.status == "completed"
	input.security_scan.issues.high > 0
	msg := sprintf(
		"security scan of commit %s found %v high-severity issue(s): no deploy until they are fixed",
		[_subject, input.security_scan.issues.high],
	)
}

_scan_status := v if {
	v := input.security_scan.status
	is_string(v)
} else := "no status"

# A literal fallback inside the rule: regopy 1.5.2 quotes an object.get() default formatted by sprintf.
_subject := v if {
	v := input.commit
	is_string(v)
} else := "(unknown commit)"
