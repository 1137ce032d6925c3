//go:build !linux

package doctor

import "context"

// Gather reports that the checks need Linux.
func Gather(ctx context.Context, o GatherOptions) Facts {
	return Facts{ConfigErr: "flatmesh doctor checks Linux hosts only"}
}
