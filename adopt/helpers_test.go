package adopt

import (
	"crypto/md5"
	"encoding/hex"
	"time"
)

func md5UUID(s string) string {
	h := md5.Sum([]byte(s))
	x := hex.EncodeToString(h[:])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

var timeZero = time.Time{}
