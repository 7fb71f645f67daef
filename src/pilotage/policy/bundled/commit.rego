# Commit policy: may the codegen agent write this commit to git?
#
# Input (built by the codegen agent just before `git commit`):
#   repo_path, branch: strings     where the commit goes
#   role: "baseline" | "change"    the base spec's service on main, or the requested change on its branch
#   message: string                the commit message
#   files: [string]                the files the commit holds, relative to the repository
#
# Every rule fires the same in rego-cpp (regopy) and in OPA: a field is tested through a helper rule without
# arguments (`not _message_given`), never as `not f(input.missing)` (true in rego-cpp, undefined in OPA), and
# built-ins only see values whose type was checked (OPA stops the evaluation on `regex.match(_, 1)`).
package pilotage.commit

deny contains {"msg": msg, "rule": "secret-file", "file": path} if {
	some path in _files
	is_string(path)
	regex.match(`(^|/)(id_rsa|id_ecdsa|id_ed25519|\.env|[^/]+\.pem|[^/]+\.key)$`, path)
	msg := sprintf("file %s looks like a secret (private key or .env): it must not be committed", [path])
}

deny contains {"msg": msg, "rule": "malformed-input"} if {
	not _files_listed
	msg := "the commit's file list is missing or not a list of paths: no commit of files that cannot be checked"
}

deny contains "empty commit message: say what the commit changes" if {
	not _message_given
}

deny contains msg if {
	not _role_known
	msg := "unknown commit role: a commit is the \"baseline\" or a \"change\""
}

deny contains msg if {
	input.role == "change"
	input.branch in {"main", "master"}
	msg := sprintf("a generated change may not be committed on %s: commit it on its own branch", [input.branch])
}

deny contains msg if {
	input.role == "change"
	not _branch_named
	msg := "a generated change needs the name of its own branch"
}

_files := v if {
	v := input.files
	is_array(v)
} else := []

_files_listed if {
	is_array(input.files)
	every path in input.files {
		is_string(path)
	}
}

_message_given if {
	is_string(input.message)
	trim_space(input.message) != ""
}

_role_known if input.role in {"baseline", "change"}

_branch_named if {
	is_string(input.branch)
	trim_space(input.branch) != ""
}
