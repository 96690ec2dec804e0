using System.Text;

namespace DreamBooth.Engine.Tokenization;

/// <summary>
/// GPT-2/CLIP <c>bytes_to_unicode</c>: every UTF-8 byte maps to one printable character (printable Latin-1 bytes map
/// to themselves, the rest to U+0100 upwards), so BPE symbols never contain whitespace or control characters.
/// </summary>
internal static class ByteEncoder
{
    static readonly char[] Table = BuildTable();

    static char[] BuildTable()
    {
        var table = new char[256];
        var isPrintable = new bool[256];
        for (int b = '!'; b <= '~'; b++) isPrintable[b] = true;
        for (int b = 0xA1; b <= 0xAC; b++) isPrintable[b] = true;
        for (int b = 0xAE; b <= 0xFF; b++) isPrintable[b] = true;
        int next = 0;
        for (int b = 0; b < 256; b++) table[b] = isPrintable[b] ? (char)b : (char)(256 + next++);
        return table;
    }

    public static string Encode(string word)
    {
        var bytes = Encoding.UTF8.GetBytes(word);
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = Table[bytes[i]];
        return new string(chars);
    }
}
