package bench

import (
	"math/rand/v2"
	"strings"
)

// Corpora of published text (Options.Corpus).
const (
	// CorpusNone publishes the latency prefix alone ("b:<ns>:<n>").
	CorpusNone = ""
	// CorpusChat appends realistic danmaku to the prefix: see chatText.
	CorpusChat = "chat"
)

// Pieces of chat the corpus draws from: the repeated memes of a live
// room, short reactions in Chinese, Japanese and English, emoji, and
// longer sentences that mix them.
var (
	chatMemes = []string{"233333", "2333", "哈哈哈", "哈哈哈哈哈哈", "？？？", "???", "666", "6666666", "草", "www", "wwwww",
		"awsl", "yyds", "前方高能", "xswl", "8888", "hhhh", "红红火火恍恍惚惚", "牛啊", "卧槽", "绝了", "好耶", "lol", "GG", "gg", "F",
		"打call", "泪目", "破防了", "？", "。。。", "妙啊", "笑死", "啊这", "确实", "对对对", "来了来了", "kksk", "上车", "下次一定"}
	chatEmoji = []string{"😂", "🤣", "👍", "❤️", "🔥", "😭", "👏", "🙏", "😅", "🤔", "💯", "✨", "🎉", "😍", "🐶", "[doge]", "[笑哭]", "[妙啊]"}
	chatWords = []string{"主播", "这波", "操作", "太强了", "真的", "好看", "什么", "时候", "开播", "下播", "弹幕", "护体", "这个", "游戏",
		"老板", "大气", "谢谢", "礼物", "第一次", "来看", "直播间", "大家好", "晚上好", "这首歌", "好听", "再来一遍", "不是吧",
		"nice", "clutch", "let's go", "pog", "no way", "same", "what", "is this", "first time here", "hello from", "Brazil",
		"かわいい", "すごい", "おつかれ", "ありがとう", "きた", "やばい", "初見です", "こんばんは"}
)

// chatMaxRunes bounds a chat text: with the latency prefix (about 30
// runes) it stays within a room's default 100-rune limit.
const chatMaxRunes = 60

// chatText returns one realistic danmaku. Lengths follow the shape of
// real chat: most messages are a meme or a few characters (about 60 %
// under 8 runes), a long tail of sentences up to the room's 100-rune
// default limit minus the latency prefix.
func chatText(rng *rand.Rand) string {
	switch r := rng.Float64(); {
	case r < 0.35: // a meme, sometimes repeated or with emoji
		s := chatMemes[rng.IntN(len(chatMemes))]
		if rng.IntN(4) == 0 {
			s += chatEmoji[rng.IntN(len(chatEmoji))]
		}
		return s
	case r < 0.50: // emoji only
		n := 1 + rng.IntN(3)
		var b strings.Builder
		for range n {
			b.WriteString(chatEmoji[rng.IntN(len(chatEmoji))])
		}
		return b.String()
	default: // words, with the occasional meme or emoji; length geometric
		var b strings.Builder
		n := 1
		for rng.Float64() < 0.72 && n < 16 {
			n++
		}
		for i := range n {
			switch k := rng.IntN(10); {
			case k < 7:
				w := chatWords[rng.IntN(len(chatWords))]
				if i > 0 && w[0] < 0x80 {
					b.WriteByte(' ')
				}
				b.WriteString(w)
			case k < 9:
				b.WriteString(chatMemes[rng.IntN(len(chatMemes))])
			default:
				b.WriteString(chatEmoji[rng.IntN(len(chatEmoji))])
			}
			if len([]rune(b.String())) > chatMaxRunes {
				break
			}
		}
		if r := []rune(b.String()); len(r) > chatMaxRunes {
			return string(r[:chatMaxRunes])
		}
		return b.String()
	}
}
