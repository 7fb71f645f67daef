# Commit policy: may the codegen agent write this commit to git?
#
# Input (built by the codegen agent just before `git commit`):
#   repo_path, branch: strings     where the commit goes
#   role: "baseline" | "change"    the base spec's service on main, or the requested change on its branch
#   message: string                the commit message
#   files: [string]                the files the commit holds, relative to the repository
package pilotage.commit

deny contains {"msg": msg, "rule": "secret-file", "file": path} if {
	some path in input.files
	regex.match(`(^|/)(id_rsa|id_ecdsa|id_ed25519|\.env|[^/]+\.pem|[^/]+\.key)$`, path)
	msg := sprintf("file %s looks like a secret (private key or .env): it must not be committed", [path])
}

deny contains "empty commit message: say what the commit changes" if {
	not _non_empty(input.message)
}

deny contains msg if {
	input.role == "change"
	input.branch in {"main", "master"}
	msg := sprintf("a generated change may not be committed on %s: commit it on its own branch", [input.branch])
}

_non_empty(s) if {
	is_string(s)
	trim_space(s) != ""
}
