# Static security scan of the change (bandit, PyCQA): a high-severity finding refuses the merge.
#
# Input (from pilotage.policy.scans.scan_bandit over the changed service):
#   security_scan: {tool, status, issues {high, medium, low}, findings [{test_id, file, line, severity,
#                   confidence, text}]}
#   A scan that did not complete is not a deny here (the deploy policy requires a completed one).
package pilotage.merge

deny contains {"msg": msg, "rule": "security-scan", "file": f.file, "line": f.line} if {
	some f in input.security_scan.findings
	upper(f.severity) == "HIGH"
	msg := sprintf("security scan (bandit %s) at %s:%v: %s", [f.test_id, f.file, f.line, f.text])
}
