# Deploy policy: may a commit be rolled out?
#
# Input (built by the deployment agent):
#   commit: string             the commit to deploy
#   tests_passed: bool         dev.pilotage.tests.completed "passed" for that commit
#   security_scan_passed: bool optional; when present and false the deploy is refused
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

# A literal fallback inside the rule: regopy 1.5.2 quotes an object.get() default formatted by sprintf.
_subject := v if {
	v := input.commit
	is_string(v)
} else := "(unknown commit)"
