// A Git smart-HTTP server for the GitOps cluster tests: `git http-backend` behind net/http/cgi.
module flotilla.local/gitops/githttp

go 1.26.0
