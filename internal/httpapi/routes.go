package httpapi

// table lists every route: method, path, the operation name recorded in the
// audit log, what it needs before the handler runs, and the handler.
func (a *API) table() []route {
	return []route{
		// sys
		{"GET", "/v1/sys/health", "sys.health", public, a.health},
		{"GET", "/v1/sys/seal-status", "sys.seal_status", public, a.sealStatus},
		{"POST", "/v1/sys/init", "sys.init", public, a.initVault},
		{"POST", "/v1/sys/unseal", "sys.unseal", public, a.unseal},
		{"POST", "/v1/sys/seal", "sys.seal", admin, a.seal},
		{"POST", "/v1/sys/rotate", "sys.rotate", admin, a.rotate},
		{"GET", "/v1/sys/rekey/init", "sys.rekey.status", unsealed, a.rekeyStatus},
		{"POST", "/v1/sys/rekey/init", "sys.rekey.init", unsealed, a.rekeyInit},
		{"DELETE", "/v1/sys/rekey/init", "sys.rekey.cancel", unsealed, a.rekeyCancel},
		{"POST", "/v1/sys/rekey/update", "sys.rekey.update", unsealed, a.rekeyUpdate},
		{"POST", "/v1/sys/generate-root", "sys.generate_root", unsealed, a.generateRoot},
		{"POST", "/v1/sys/rewrap", "sys.rewrap", adminExclusive, a.rewrap},
		{"GET", "/v1/sys/entropy", "sys.entropy", admin, a.entropyStatus},
		{"GET", "/v1/sys/hardening", "sys.hardening", admin, a.hardening},
		{"GET", "/v1/sys/attestation", "sys.attestation", public, a.attestation},
		{"POST", "/v1/sys/audit/hash", "sys.audit.hash", admin, a.auditHash},
		{"GET", "/v1/sys/audit/public-key", "sys.audit.public_key", unsealed, a.auditPublicKey},
		{"GET", "/v1/sys/provenance/public-key", "sys.provenance.public_key", unsealed, a.provenancePublicKey},
		{"GET", pathSnapshot, "sys.storage.snapshot", admin, a.snapshotSave},
		{"POST", pathRestore, "sys.storage.restore", adminSelfGated, a.snapshotRestore},
		{"GET", "/v1/sys/metrics", "sys.metrics", a.metricsAccess(), a.metrics},

		// auth
		{"POST", "/v1/auth/login", "auth.login", unsealed, a.login},
		{"POST", "/v1/auth/refresh", "auth.refresh", unsealed, a.refresh},
		{"POST", "/v1/auth/logout", "auth.logout", authed, a.logout},
		{"GET", "/v1/auth/jwks", "auth.jwks", unsealed, a.jwks},
		{"POST", "/v1/auth/keys/rotate", "auth.keys.rotate", admin, a.rotateJWTKey},
		{"POST", "/v1/auth/password", "auth.password.change", authed, a.changePassword},
		{"GET", "/v1/auth/sessions", "auth.sessions.list", authed, a.listSessions},
		{"DELETE", "/v1/auth/sessions/{id}", "auth.sessions.revoke", authed, a.revokeSession},
		{"POST", "/v1/auth/mfa/totp/enroll", "auth.mfa.enroll", authed, a.totpEnroll},
		{"POST", "/v1/auth/mfa/totp/confirm", "auth.mfa.confirm", authed, a.totpConfirm},
		{"DELETE", "/v1/auth/mfa/totp", "auth.mfa.disable", authed, a.totpDisable},
		{"POST", "/v1/auth/api-keys", "auth.api_keys.create", authed, a.createAPIKey},
		{"GET", "/v1/auth/api-keys", "auth.api_keys.list", authed, a.listAPIKeys},
		{"DELETE", "/v1/auth/api-keys/{id}", "auth.api_keys.revoke", authed, a.revokeAPIKey},

		// users (admin)
		{"POST", "/v1/users", "users.create", admin, a.createUser},
		{"GET", "/v1/users", "users.list", admin, a.listUsers},
		{"GET", "/v1/users/{name}", "users.get", admin, a.getUser},
		{"DELETE", "/v1/users/{name}", "users.delete", admin, a.deleteUser},
		{"POST", "/v1/users/{name}/disable", "users.disable", admin, a.disableUser},
		{"POST", "/v1/users/{name}/enable", "users.enable", admin, a.enableUser},
		{"POST", "/v1/users/{name}/password", "users.password.reset", admin, a.resetPassword},
		{"DELETE", "/v1/users/{name}/sessions", "users.sessions.revoke", admin, a.revokeUserSessions},

		// wallets
		{"POST", "/v1/accounts", "accounts.create", authed, a.createAccount},
		{"GET", "/v1/accounts", "accounts.list", authed, a.listAccounts},
		{"GET", "/v1/accounts/{name}", "accounts.get", authed, a.getAccount},
		{"DELETE", "/v1/accounts/{name}", "accounts.delete", authed, a.deleteAccount},
		{"POST", "/v1/accounts/{name}/sign-message", "accounts.sign_message", authed, a.signEndpoint(opSignMessage)},
		{"POST", "/v1/accounts/{name}/sign-typed-data", "accounts.sign_typed_data", authed, a.signEndpoint(opSignTypedData)},
		{"POST", "/v1/accounts/{name}/sign-transaction", "accounts.sign_transaction", authed, a.signEndpoint(opSignTransaction)},
		{"POST", "/v1/accounts/{name}/sign-psbt", "accounts.sign_psbt", authed, a.signEndpoint(opSignPSBT)},
		{"GET", "/v1/accounts/{name}/provenance", "accounts.provenance", authed, a.accountProvenance},
		{"POST", "/v1/accounts/{name}/grants", "accounts.grant", authed, a.grant},
		{"DELETE", "/v1/accounts/{name}/grants/{principal}", "accounts.revoke_grant", authed, a.revokeGrant},

		// HD wallets
		{"POST", "/v1/wallets", "wallets.create", authed, a.createWallet},
		{"GET", "/v1/wallets", "wallets.list", authed, a.listWallets},
		{"GET", "/v1/wallets/{name}", "wallets.get", authed, a.getWallet},
		{"DELETE", "/v1/wallets/{name}", "wallets.delete", authed, a.deleteWallet},

		// transaction policies (admin; writes need step-up) and the dry run
		{"POST", "/v1/policies", "policies.create", admin, a.createPolicy},
		{"GET", "/v1/policies", "policies.list", admin, a.listPolicies},
		{"POST", "/v1/policies/evaluate", "policies.evaluate", authed, a.evaluatePolicies},
		{"GET", "/v1/policies/{id}", "policies.get", admin, a.getPolicy},
		{"PUT", "/v1/policies/{id}", "policies.update", admin, a.updatePolicy},
		{"DELETE", "/v1/policies/{id}", "policies.delete", admin, a.deletePolicy},
		{"GET", "/v1/policies/{id}/versions", "policies.versions", admin, a.policyVersions},

		// approvals
		{"GET", "/v1/approvals", "approvals.list", authed, a.listApprovals},
		{"GET", "/v1/approvals/{id}", "approvals.get", authed, a.getApproval},
		{"POST", "/v1/approvals/{id}/approve", "approvals.approve", authed, a.approve},
		{"POST", "/v1/approvals/{id}/reject", "approvals.reject", authed, a.reject},

		// Ethereum JSON-RPC remote signer
		{"POST", "/v1/rpc", "rpc", authed, a.rpc},
	}
}
