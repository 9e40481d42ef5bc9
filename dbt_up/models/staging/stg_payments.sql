with

source as (

    select * from {{ ref('raw_payments') }}

),

renamed as (

    select
        id as payment_id,
        order_id,
        lower(trim(payment_method)) as payment_method,
        -- raw amounts are in cents
        cast(amount as decimal(18, 2)) / 100 as amount

    from source

),

final as (

    select
        payment_id,
        order_id,
        payment_method,
        cast(amount as decimal(18, 2)) as amount,
        amount < 0 as is_refund

    from renamed

)

select * from final
