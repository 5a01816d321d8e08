# Please install the Anthropic SDK first: `pip install anthropic`
import anthropic

client = anthropic.Anthropic(
    base_url="https://api.minimax.io/anthropic",
    api_key="<MINIMAX_API_KEY>",
)

message = client.messages.create(
    model="MiniMax-M3",
    max_tokens=1000,
    messages=[
        {"role": "user", "content": "Hi, how are you?"}
    ],
)

for block in message.content:
    if block.type == "thinking":
        print(f"Thinking:\n{block.thinking}\n")
    elif block.type == "text":
        print(f"Text:\n{block.text}\n")
